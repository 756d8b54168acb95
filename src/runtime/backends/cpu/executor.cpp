// The FP32 CPU executor. Prepare once (shape inference, folding, fusion, kernel setup,
// buffer allocation), then run many times without allocating activations.
#include "qyolo/executor.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "qyolo/ops.h"
#include "runtime/backends/cpu/conv_onednn.h"

namespace qyolo {

struct Step {
  const Node* node = nullptr;
  const OpDef* op = nullptr;
  std::string label;  // op name shown in profiles
  std::vector<int> inputs;   // value slots; -1 for an omitted input
  std::vector<int> outputs;  // value slots
  std::unique_ptr<cpu::OnednnConv> conv;
  cpu::FusedActivation activation = cpu::FusedActivation::kNone;
  double milliseconds = 0.0;
};

struct CpuExecutor::Impl {
  Graph graph;
  ShapeInfo shapes;
  std::vector<Tensor> slots;
  std::unordered_map<std::string, int> slot_of;
  std::vector<Step> steps;
  std::vector<ValueInfo> inputs, outputs;
  bool profiling = false;

  int slot(const std::string& name) {
    auto it = slot_of.find(name);
    if (it != slot_of.end()) return it->second;
    const int index = static_cast<int>(slots.size());
    slots.emplace_back();
    slot_of.emplace(name, index);
    return index;
  }
};

namespace {

bool fusion_disabled_by_env() {
  const char* env = std::getenv("QYOLO_DISABLE_FUSION");
  return env && std::string(env) == "1";
}

// Finds the SiLU (x * sigmoid(x)) or Sigmoid that consumes a Conv output alone.
// Returns the index of the last fused node (the one whose output the fused step writes).
struct FusionMatch {
  cpu::FusedActivation activation = cpu::FusedActivation::kNone;
  std::vector<size_t> absorbed;  // node indices folded into the conv step
  std::string output;
};

FusionMatch match_activation(const Graph& graph, size_t conv_index,
                             const std::unordered_map<std::string, std::vector<size_t>>& users) {
  FusionMatch none;
  const std::string& y = graph.nodes[conv_index].outputs[0];
  if (graph.is_output(y)) return none;
  auto it = users.find(y);
  if (it == users.end()) return none;
  const auto& consumers = it->second;
  auto find_sigmoid = [&]() -> const Node* {
    for (size_t c : consumers) {
      if (graph.nodes[c].op_type == "Sigmoid") return &graph.nodes[c];
    }
    return nullptr;
  };
  const Node* sigmoid = find_sigmoid();
  if (!sigmoid) return none;
  const size_t sigmoid_index = static_cast<size_t>(sigmoid - graph.nodes.data());
  const std::string& s = sigmoid->outputs[0];
  if (consumers.size() == 1) {
    return {cpu::FusedActivation::kSigmoid, {sigmoid_index}, s};
  }
  if (consumers.size() != 2 || graph.is_output(s)) return none;
  auto s_users = users.find(s);
  if (s_users == users.end() || s_users->second.size() != 1) return none;
  const size_t mul_index = s_users->second[0];
  const Node& mul = graph.nodes[mul_index];
  const bool is_silu = mul.op_type == "Mul" && mul.inputs.size() == 2 &&
                       ((mul.inputs[0] == y && mul.inputs[1] == s) ||
                        (mul.inputs[0] == s && mul.inputs[1] == y));
  const bool mul_is_other_user =
      std::find(consumers.begin(), consumers.end(), mul_index) != consumers.end();
  if (!is_silu || !mul_is_other_user) return none;
  return {cpu::FusedActivation::kSilu, {sigmoid_index, mul_index}, mul.outputs[0]};
}

}  // namespace

CpuExecutor::CpuExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CpuExecutor::~CpuExecutor() = default;

Expected<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const Graph& graph,
                                                           ExecutorOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->graph = graph;
  Graph& g = impl->graph;
  QYOLO_RETURN_IF_ERROR(topological_sort(g));
  QYOLO_ASSIGN_OR_RETURN(impl->shapes, infer_shapes(g, options.input_shapes));
  const bool fuse = options.fuse && !fusion_disabled_by_env();

  for (const auto& input : g.inputs) {
    impl->inputs.push_back(*impl->shapes.find(input.name));
    impl->slot(input.name);
  }
  for (const auto& output : g.outputs) {
    const ValueInfo* info = impl->shapes.find(output.name);
    impl->outputs.push_back(*info);
  }
  // Constants (initializers and folded values) live in their slots for the executor's life.
  for (auto& [name, tensor] : impl->shapes.constants) {
    impl->slots[impl->slot(name)] = tensor;
  }

  const auto users = consumers_by_value(g);
  std::vector<bool> absorbed(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (absorbed[i]) continue;
    const Node& node = g.nodes[i];
    bool folded = true;
    for (const auto& out : node.outputs) {
      folded = folded && (out.empty() || impl->shapes.constant(out) != nullptr);
    }
    if (folded) continue;

    Step step;
    step.node = &node;
    step.op = find_op(node.op_type);
    step.label = node.op_type;
    for (const auto& in : node.inputs) step.inputs.push_back(in.empty() ? -1 : impl->slot(in));
    std::vector<std::string> outs = node.outputs;

    const Tensor* weight = node.op_type == "Conv" ? impl->shapes.constant(node.inputs[1]) : nullptr;
    const ValueInfo* x_info = node.op_type == "Conv" ? impl->shapes.find(node.inputs[0]) : nullptr;
    if (weight && options.fast_conv && x_info->dtype == DType::kFloat32) {
      FusionMatch match;
      if (fuse) match = match_activation(g, i, users);
      const Tensor* bias = node.inputs.size() > 2 && !node.inputs[2].empty()
                               ? impl->shapes.constant(node.inputs[2])
                               : nullptr;
      const bool bias_ok = node.inputs.size() < 3 || node.inputs[2].empty() || bias;
      if (bias_ok) {
        const ValueInfo* y_info = impl->shapes.find(node.outputs[0]);
        auto conv = cpu::OnednnConv::create(node, *weight, bias, x_info->shape, y_info->shape,
                                            match.activation);
        if (conv) {
          step.conv = std::move(conv).value();
          step.activation = match.activation;
          step.inputs.resize(1);
          if (match.activation != cpu::FusedActivation::kNone) {
            for (size_t a : match.absorbed) absorbed[a] = true;
            outs = {match.output};
            step.label = match.activation == cpu::FusedActivation::kSilu ? "Conv+SiLU"
                                                                         : "Conv+Sigmoid";
          }
        }
      }
    }
    for (const auto& out : outs) {
      if (out.empty()) {
        step.outputs.push_back(-1);
        continue;
      }
      const int s = impl->slot(out);
      const ValueInfo* info = impl->shapes.find(out);
      impl->slots[s] = Tensor(info->dtype, info->shape);
      step.outputs.push_back(s);
    }
    impl->steps.push_back(std::move(step));
  }
  return std::unique_ptr<CpuExecutor>(new CpuExecutor(std::move(impl)));
}

Expected<std::map<std::string, Tensor>> CpuExecutor::run(
    const std::map<std::string, Tensor>& inputs) {
  Impl& m = *impl_;
  for (const auto& [name, tensor] : inputs) {
    if (!m.graph.find_input(name)) {
      std::string names;
      for (const auto& input : m.inputs) names += (names.empty() ? "" : ", ") + input.name;
      return not_found("the model has no input named '", name, "' (inputs: ", names, ")");
    }
  }
  for (const auto& expected : m.inputs) {
    auto it = inputs.find(expected.name);
    if (it == inputs.end()) {
      return not_found("input '", expected.name, "' (", dtype_name(expected.dtype), " ",
                       shape_str(expected.shape), ") is missing");
    }
    const Tensor& given = it->second;
    if (given.dtype() != expected.dtype || given.shape() != expected.shape) {
      return invalid_argument("input '", expected.name, "' is ", dtype_name(given.dtype()), " ",
                              shape_str(given.shape()), ", expected ",
                              dtype_name(expected.dtype), " ", shape_str(expected.shape));
    }
    m.slots[m.slot_of.at(expected.name)] = given;
  }

  std::vector<const Tensor*> in_ptrs;
  std::vector<Tensor*> out_ptrs;
  for (Step& step : m.steps) {
    const auto start = std::chrono::steady_clock::now();
    in_ptrs.clear();
    out_ptrs.clear();
    for (int s : step.inputs) in_ptrs.push_back(s < 0 ? nullptr : &m.slots[s]);
    for (int s : step.outputs) out_ptrs.push_back(s < 0 ? nullptr : &m.slots[s]);
    Status status = step.conv ? step.conv->run(*in_ptrs[0], *out_ptrs[0])
                              : step.op->compute(*step.node, in_ptrs, out_ptrs);
    if (!status.is_ok()) return with_context(status, step.node->label());
    if (m.profiling) {
      step.milliseconds += std::chrono::duration<double, std::milli>(
                               std::chrono::steady_clock::now() - start).count();
    }
  }
  std::map<std::string, Tensor> results;
  for (const auto& output : m.outputs) results[output.name] = m.slots[m.slot_of.at(output.name)];
  return results;
}

const std::vector<ValueInfo>& CpuExecutor::inputs() const { return impl_->inputs; }
const std::vector<ValueInfo>& CpuExecutor::outputs() const { return impl_->outputs; }
size_t CpuExecutor::num_steps() const { return impl_->steps.size(); }
void CpuExecutor::set_profiling(bool enabled) { impl_->profiling = enabled; }

std::vector<StepProfile> CpuExecutor::profile() const {
  std::vector<StepProfile> out;
  for (const Step& step : impl_->steps) {
    out.push_back({step.node->name, step.label, step.milliseconds});
  }
  return out;
}

}  // namespace qyolo
