// qyolo cocoeval --gt <instances.json> --dt <results.json>: placeholder until the evaluator lands.
#include "qyolo/commands.h"

namespace qyolo::cli {
void add_cocoeval_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("cocoeval", "COCO bbox evaluation (pycocotools' COCOeval)");
  cmd->callback([&exit_code] { exit_code = report_error("cocoeval", unsupported("not built yet")); });
}
}  // namespace qyolo::cli
