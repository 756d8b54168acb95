// qyolo inspect <model.onnx>: inputs, outputs, op counts, parameters, FLOPs, Q/DQ presence.
#include <cstdio>
#include <map>

#include "qyolo/commands.h"
#include "qyolo/graph.h"
#include "qyolo/onnx.h"

namespace qyolo::cli {
namespace {

struct InspectOptions {
  std::string model;
  std::vector<std::string> shapes;  // name:1x3x640x640
};

// Multiply-accumulates of one Conv node at the inferred shapes.
int64_t conv_macs(const Node& node, const ShapeInfo& shapes) {
  const ValueInfo* w = shapes.find(node.inputs[1]);
  const ValueInfo* y = shapes.find(node.outputs[0]);
  if (!w || !y || w->shape.size() != 4 || y->shape.size() != 4) return 0;
  return shape_numel(y->shape) * w->shape[1] * w->shape[2] * w->shape[3];
}

int run_inspect(const InspectOptions& options) {
  auto graph = load_onnx(options.model);
  if (!graph) return report_error("inspect", graph.status());
  std::map<std::string, Shape> input_shapes;
  for (const auto& spec : options.shapes) {
    const auto colon = spec.rfind(':');
    if (colon == std::string::npos) {
      return report_error("inspect",
                          invalid_argument("--shapes '", spec, "': expected name:1x3x640x640"));
    }
    auto dims = parse_dims(spec.substr(colon + 1));
    if (!dims) return report_error("inspect", dims.status());
    input_shapes[spec.substr(0, colon)] = *dims;
  }
  auto shapes = infer_shapes(*graph, input_shapes);
  if (!shapes) return report_error("inspect", with_context(shapes.status(), options.model));

  std::printf("model     %s\n", options.model.c_str());
  std::printf("producer  %s %s, IR %lld, opset %lld\n", graph->producer_name.c_str(),
              graph->producer_version.c_str(), static_cast<long long>(graph->ir_version),
              static_cast<long long>(graph->opset()));
  for (const auto& input : graph->inputs) {
    const ValueInfo* v = shapes->find(input.name);
    std::printf("input     %-24s %-8s %s\n", input.name.c_str(), dtype_name(v->dtype).c_str(),
                shape_str(v->shape).c_str());
  }
  for (const auto& output : graph->outputs) {
    const ValueInfo* v = shapes->find(output.name);
    std::printf("output    %-24s %-8s %s\n", output.name.c_str(),
                v ? dtype_name(v->dtype).c_str() : "?", v ? shape_str(v->shape).c_str() : "?");
  }
  int64_t parameters = 0, parameter_bytes = 0;
  for (const auto& [name, tensor] : graph->initializers) {
    parameters += tensor.numel();
    parameter_bytes += static_cast<int64_t>(tensor.nbytes());
  }
  std::map<std::string, int> op_counts;
  int64_t macs = 0;
  bool has_qdq = false;
  for (const auto& node : graph->nodes) {
    ++op_counts[node.op_type];
    if (node.op_type == "Conv") macs += conv_macs(node, *shapes);
    if (node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear") has_qdq = true;
  }
  std::printf("params    %lld (%.2f MB)\n", static_cast<long long>(parameters),
              parameter_bytes / 1e6);
  std::printf("FLOPs     %.2f G (convolutions, 2 x %.3f G multiply-adds)\n", 2.0 * macs / 1e9,
              macs / 1e9);
  std::printf("Q/DQ      %s\n", has_qdq ? "yes (a quantization-aware model)" : "no");
  std::printf("nodes     %zu\n", graph->nodes.size());
  for (const auto& [op, count] : op_counts) std::printf("  %-20s %d\n", op.c_str(), count);
  return 0;
}

}  // namespace

void add_inspect_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Describe an ONNX model");
  cmd->add_option("model", options->model, "ONNX model file")->required();
  cmd->add_option("--shapes", options->shapes, "Input shapes, e.g. images:1x3x672x672");
  cmd->callback([options, &exit_code] { exit_code = run_inspect(*options); });
}

}  // namespace qyolo::cli
