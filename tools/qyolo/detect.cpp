// placeholder until the command lands.
#include "qyolo/commands.h"

namespace qyolo::cli {
void add_detect_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("detect", "not built yet");
  cmd->callback([&exit_code] { exit_code = report_error("detect", unsupported("not built yet")); });
}
}  // namespace qyolo::cli
