// Each subcommand registers itself on the CLI app; its callback's exit code is stored in
// `exit_code`. Errors reach the user as one line: "qyolo <command>: error: ...".
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "qyolo/engine.h"
#include "qyolo/status.h"

namespace qyolo::cli {

void add_inspect_command(CLI::App& app, int& exit_code);
void add_infer_command(CLI::App& app, int& exit_code);
void add_cocoeval_command(CLI::App& app, int& exit_code);
void add_val_command(CLI::App& app, int& exit_code);
void add_detect_command(CLI::App& app, int& exit_code);
void add_translate_command(CLI::App& app, int& exit_code);
void add_calibrate_command(CLI::App& app, int& exit_code);
void add_build_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_qat_command(CLI::App& app, int& exit_code);  // with QYOLO_QAT (LibTorch)

// Prints the status as one line on stderr and returns the exit code for it.
int report_error(const std::string& command, const Status& status);

// Parses "1x3x640x640" or "1,3,640,640".
Expected<std::vector<int64_t>> parse_dims(const std::string& text);

// --devices of val and bench: "all" (every device of the engine's target) or indices, repeats
// allowed (two instances on one GPU, as Orin's two DLA cores), checked against the target;
// empty: {0} (val.cpp). The second form reads the target from the engine file at `engine`.
Expected<std::vector<int>> parse_devices(const std::string& text, EngineTarget target);
Expected<std::vector<int>> parse_devices(const std::string& text, const std::string& engine);

}  // namespace qyolo::cli
