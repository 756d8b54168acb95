// The trtexec-style precision flags shared by val, infer and build: --int8 --calib <cache>
// --layerPrecisions name:fp16,...
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "qyolo/int8.h"
#include "qyolo/quant.h"

namespace qyolo::cli {

struct PrecisionFlags {
  bool int8 = false;
  std::string calib;
  std::string layer_precisions;
};

// `int8_help` says what --int8 does for this command (val/infer run the CPU reference
// backend; build makes INT8 layers).
inline void add_precision_flags(CLI::App* cmd, PrecisionFlags& flags,
                                const char* int8_help =
                                    "Run INT8 on the CPU reference backend (needs --calib)") {
  cmd->add_flag("--int8", flags.int8, int8_help);
  cmd->add_option("--calib", flags.calib,
                  "Calibration cache (TensorRT format) with the activation scales");
  cmd->add_option("--layerPrecisions", flags.layer_precisions,
                  "Layers kept in FP16: name:fp16,name2:fp16 (names may be quoted)");
}

// Reads the cache and the FP16 list; warns (on stderr) about cache tensors the model lacks.
inline Status resolve_precision(const PrecisionFlags& flags, const Graph& model,
                                std::map<std::string, float>& scales,
                                std::set<std::string>& fp16_layers) {
  if (!flags.int8) {
    if (!flags.calib.empty() || !flags.layer_precisions.empty()) {
      return invalid_argument("--calib and --layerPrecisions need --int8");
    }
    return Status::ok();
  }
  if (flags.calib.empty()) return invalid_argument("--int8 needs --calib <cache>");
  QYOLO_ASSIGN_OR_RETURN(CalibrationCache cache, read_calibration_cache(flags.calib));
  const auto missing = cache_tensors_missing_from(cache, model);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    std::fprintf(stderr, "warning: %zu tensors of %s are not in the model (%s%s)\n", missing.size(),
                 flags.calib.c_str(), list.c_str(), missing.size() > 5 ? ", ..." : "");
  }
  for (const auto& e : cache.entries) scales[e.tensor] = e.scale;
  QYOLO_ASSIGN_OR_RETURN(fp16_layers, parse_layer_precisions(flags.layer_precisions));
  std::set<std::string> nodes;
  for (const auto& n : model.nodes) nodes.insert(n.name);
  for (const auto& name : fp16_layers) {
    if (!nodes.count(name)) {
      return not_found("--layerPrecisions names '", name, "', which is not a node of the model");
    }
  }
  return Status::ok();
}

}  // namespace qyolo::cli
