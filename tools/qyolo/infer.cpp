// qyolo infer --onnx <model> --input <x.npy> --output-dir <dir>: run a model on .npy inputs.
#include <cstdio>
#include <filesystem>
#include <map>

#include "qyolo/commands.h"
#include "qyolo/executor.h"
#include "qyolo/int8.h"
#include "qyolo/npy.h"
#include "qyolo/onnx.h"
#include "qyolo/precision_flags.h"

namespace qyolo::cli {
namespace {

struct InferOptions {
  std::string model;
  std::vector<std::string> inputs;  // path, or name=path
  std::string output_dir;
  PrecisionFlags precision;
};

// Keeps [A-Za-z0-9._-] and replaces everything else with '_', so names become file names.
std::string file_safe(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  return out;
}

int run_infer(const InferOptions& options) {
  auto graph = load_onnx(options.model);
  if (!graph) return report_error("infer", graph.status());

  std::map<std::string, Tensor> inputs;
  std::map<std::string, Shape> input_shapes;
  for (const auto& spec : options.inputs) {
    const auto eq = spec.find('=');
    std::string name, path = spec;
    if (eq != std::string::npos) {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    } else if (graph->inputs.size() == 1) {
      name = graph->inputs[0].name;
    } else {
      return report_error("infer", invalid_argument("the model has ", graph->inputs.size(),
                                                    " inputs: give each as --input name=file.npy"));
    }
    const ValueInfo* declared = graph->find_input(name);
    if (!declared) {
      return report_error("infer", not_found(options.model, " has no input named '", name, "'"));
    }
    auto tensor = read_npy(path);
    if (!tensor) return report_error("infer", tensor.status());
    if (tensor->dtype() != declared->dtype) {
      return report_error("infer", invalid_argument(path, ": dtype ", dtype_name(tensor->dtype()),
                                                    ", but input '", name, "' of ", options.model,
                                                    " expects ", dtype_name(declared->dtype)));
    }
    bool fits = declared->has_shape && declared->shape.size() == tensor->shape().size();
    for (size_t d = 0; fits && d < declared->shape.size(); ++d) {
      fits = declared->shape[d] < 0 || declared->shape[d] == tensor->shape()[d];
    }
    if (!fits) {
      return report_error("infer", invalid_argument(path, ": shape ", shape_str(tensor->shape()),
                                                    ", but input '", name, "' of ", options.model,
                                                    " expects ", shape_str(declared->shape)));
    }
    input_shapes[name] = tensor->shape();
    inputs[name] = std::move(tensor).value();
  }
  for (const auto& declared : graph->inputs) {
    if (!inputs.count(declared.name)) {
      return report_error("infer", not_found("no --input given for model input '", declared.name,
                                             "' (", shape_str(declared.shape), ")"));
    }
  }

  Int8Options int8_options;
  Status precision =
      resolve_precision(options.precision, *graph, int8_options.scales, int8_options.fp16_layers);
  if (!precision.is_ok()) return report_error("infer", precision);
  Expected<std::map<std::string, Tensor>> outputs = std::map<std::string, Tensor>{};
  if (options.precision.int8) {
    int8_options.input_shapes = input_shapes;
    auto executor = Int8Executor::create(*graph, int8_options);
    if (!executor) return report_error("infer", with_context(executor.status(), options.model));
    outputs = (*executor)->run(inputs);
  } else {
    ExecutorOptions exec_options;
    exec_options.input_shapes = input_shapes;
    auto executor = CpuExecutor::create(*graph, exec_options);
    if (!executor) return report_error("infer", with_context(executor.status(), options.model));
    outputs = (*executor)->run(inputs);
  }
  if (!outputs) return report_error("infer", outputs.status());

  std::error_code ec;
  std::filesystem::create_directories(options.output_dir, ec);
  if (ec) {
    return report_error("infer",
                        io_error("cannot create ", options.output_dir, ": ", ec.message()));
  }
  for (const auto& [name, tensor] : *outputs) {
    const auto path = std::filesystem::path(options.output_dir) / (file_safe(name) + ".npy");
    Status status = write_npy(tensor, path.string());
    if (!status.is_ok()) return report_error("infer", status);
    std::printf("%s  %s %s -> %s\n", name.c_str(), dtype_name(tensor.dtype()).c_str(),
                shape_str(tensor.shape()).c_str(), path.c_str());
  }
  return 0;
}

}  // namespace

void add_infer_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<InferOptions>();
  CLI::App* cmd = app.add_subcommand("infer", "Run a model on .npy inputs, write .npy outputs");
  cmd->add_option("--onnx", options->model, "ONNX model file")->required();
  cmd->add_option("--input", options->inputs, "Input .npy file (or name=file.npy)")->required();
  cmd->add_option("--output-dir", options->output_dir, "Folder for <output>.npy files")->required();
  add_precision_flags(cmd, options->precision);
  cmd->callback([options, &exit_code] { exit_code = run_infer(*options); });
}

}  // namespace qyolo::cli
