// qyolo: from a YOLOv5 ONNX model to validated INT8 inference.
#include <cstdio>
#include <iostream>

#include "qyolo/commands.h"

namespace qyolo::cli {

int report_error(const std::string& command, const Status& status) {
  std::fprintf(stderr, "qyolo %s: error: %s\n", command.c_str(), status.message().c_str());
  return 1;
}

Expected<std::vector<int64_t>> parse_dims(const std::string& text) {
  std::vector<int64_t> dims;
  std::string current;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : 'x';
    if (c == 'x' || c == ',') {
      if (current.empty())
        return invalid_argument("bad shape '", text, "': expected e.g. 1x3x640x640");
      dims.push_back(std::stoll(current));
      current.clear();
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      current += c;
    } else {
      return invalid_argument("bad shape '", text, "': expected e.g. 1x3x640x640");
    }
  }
  return dims;
}

}  // namespace qyolo::cli

int main(int argc, char** argv) {
  CLI::App app{"qyolo: YOLOv5 from ONNX to validated INT8 inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("qyolo ") + QYOLO_VERSION);
  int exit_code = 0;
  qyolo::cli::add_inspect_command(app, exit_code);
  qyolo::cli::add_infer_command(app, exit_code);
  qyolo::cli::add_cocoeval_command(app, exit_code);
  qyolo::cli::add_val_command(app, exit_code);
  qyolo::cli::add_detect_command(app, exit_code);
  qyolo::cli::add_translate_command(app, exit_code);
  qyolo::cli::add_calibrate_command(app, exit_code);
  qyolo::cli::add_build_command(app, exit_code);
  qyolo::cli::add_bench_command(app, exit_code);
#ifdef QYOLO_HAVE_QAT
  qyolo::cli::add_qat_command(app, exit_code);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
