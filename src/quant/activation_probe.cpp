// The FP32 executor with intermediate values exposed as outputs: what calibration measures.
#include "quant/quant_internal.h"

namespace qyolo::quant {

Expected<ActivationProbe> ActivationProbe::create(
    const Graph& graph, std::vector<std::string> values,
    const std::map<std::string, Shape>& input_shapes) {
  Graph probe = graph;
  const ConstantValues constants(graph);
  for (const auto& name : values) {
    if (constants.contains(name))
      return invalid_argument("'", name, "' is a constant, not an activation");
    if (graph.find_input(name) || probe.is_output(name)) continue;
    ValueInfo info;
    info.name = name;
    info.dtype = DType::kFloat32;
    probe.outputs.push_back(info);
  }
  ExecutorOptions options;
  options.input_shapes = input_shapes;
  ActivationProbe result;
  QYOLO_ASSIGN_OR_RETURN(result.executor_, CpuExecutor::create(probe, options));
  result.values_ = std::move(values);
  return result;
}

Expected<ActivationProbe::Result> ActivationProbe::run(const std::map<std::string, Tensor>& batch) {
  Result result;
  QYOLO_ASSIGN_OR_RETURN(result.outputs, executor_->run(batch));
  for (const auto& name : values_) {
    auto it = result.outputs.find(name);
    const Tensor* value = it != result.outputs.end() ? &it->second : nullptr;
    if (!value) {
      auto input = batch.find(name);
      if (input == batch.end()) return not_found("value '", name, "' was not computed");
      value = &input->second;
    }
    if (value->dtype() != DType::kFloat32) {
      return invalid_argument("value '", name, "' is ", dtype_name(value->dtype()),
                              ", not float32");
    }
    result.values.push_back(value);
  }
  return result;
}

}  // namespace qyolo::quant
