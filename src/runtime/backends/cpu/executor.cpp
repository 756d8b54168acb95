// The FP32 CPU executor. Prepare once (shape inference, folding, fusion, layout, kernels,
// buffers), then run many times without allocating activations.
//
// Layout: oneDNN's AVX2 convolutions are about twice as fast channels-last as on NCHW, so
// convolutions read and write NHWC, and the ops between them that do not care about layout
// (element-wise, Concat on channels, MaxPool, nearest Resize) run NHWC too. Transposes are
// inserted only where an NCHW-only op (Reshape in the detect head, say) meets NHWC data.
#include "qyolo/executor.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "qyolo/ops.h"
#include "runtime/backends/cpu/check_inputs.h"
#include "runtime/backends/cpu/conv_onednn.h"
#include "runtime/backends/cpu/maxpool_nhwc.h"
#include "runtime/backends/cpu/simple_onednn.h"

namespace qyolo {
namespace {

enum class Layout { kNchw, kNhwc };
enum class Kernel { kReference, kConv, kMaxPoolNhwc, kOnednn };

const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};
const std::vector<int64_t> kToNchw = {0, 3, 1, 2};

Shape permute(const Shape& shape, const std::vector<int64_t>& perm) {
  Shape out;
  for (int64_t p : perm) out.push_back(shape[p]);
  return out;
}

}  // namespace

struct Step {
  const Node* node = nullptr;
  std::unique_ptr<Node> owned_node;  // a rewritten copy (NHWC attributes, reorders)
  const OpDef* op = nullptr;
  Kernel kernel = Kernel::kReference;
  std::string label;         // op name shown in profiles
  std::vector<int> inputs;   // value slots; -1 for an omitted input
  std::vector<int> outputs;  // value slots
  std::unique_ptr<cpu::OnednnConv> conv;
  std::unique_ptr<cpu::OnednnPrimitive> primitive;  // Sigmoid or reorder
  cpu::FusedActivation activation = cpu::FusedActivation::kNone;
  double milliseconds = 0.0;
};

struct CpuExecutor::Impl {
  Graph graph;
  ShapeInfo shapes;
  std::vector<Tensor> slots;
  std::vector<Layout> layouts;
  std::vector<Shape> logical;  // NCHW-order shape of each slot, whatever its layout
  std::vector<bool> is_constant;
  std::unordered_map<std::string, int> slot_of;
  std::vector<Step> steps;
  std::vector<ValueInfo> inputs, outputs;
  std::vector<int> output_slots;
  bool profiling = false;

  int slot(const std::string& name) {
    auto it = slot_of.find(name);
    if (it != slot_of.end()) return it->second;
    const int index = new_slot();
    slot_of.emplace(name, index);
    return index;
  }
  int new_slot() {
    slots.emplace_back();
    layouts.push_back(Layout::kNchw);
    logical.emplace_back();
    is_constant.push_back(false);
    return static_cast<int>(slots.size()) - 1;
  }
};

namespace {

bool fusion_disabled_by_env() {
  const char* env = std::getenv("QYOLO_DISABLE_FUSION");
  return env && std::string(env) == "1";
}

// The SiLU (x * sigmoid(x)) or Sigmoid that alone consumes a Conv output.
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
  const Node* sigmoid = nullptr;
  for (size_t c : consumers) {
    if (graph.nodes[c].op_type == "Sigmoid") sigmoid = &graph.nodes[c];
  }
  if (!sigmoid) return none;
  const size_t sigmoid_index = static_cast<size_t>(sigmoid - graph.nodes.data());
  const std::string& s = sigmoid->outputs[0];
  if (consumers.size() == 1) return {cpu::FusedActivation::kSigmoid, {sigmoid_index}, s};
  if (consumers.size() != 2 || graph.is_output(s)) return none;
  auto s_users = users.find(s);
  if (s_users == users.end() || s_users->second.size() != 1) return none;
  const size_t mul_index = s_users->second[0];
  const Node& mul = graph.nodes[mul_index];
  const bool is_silu =
      mul.op_type == "Mul" && mul.inputs.size() == 2 &&
      ((mul.inputs[0] == y && mul.inputs[1] == s) || (mul.inputs[0] == s && mul.inputs[1] == y));
  const bool mul_is_other_user =
      std::find(consumers.begin(), consumers.end(), mul_index) != consumers.end();
  if (!is_silu || !mul_is_other_user) return none;
  return {cpu::FusedActivation::kSilu, {sigmoid_index, mul_index}, mul.outputs[0]};
}

// Builds the step list from the graph: folded nodes dropped, convolutions on oneDNN with
// their activation fused.
Status build_steps(CpuExecutor::Impl& m, const ExecutorOptions& options) {
  Graph& g = m.graph;
  const bool fuse = options.fuse && !fusion_disabled_by_env();
  const auto users = consumers_by_value(g);
  std::vector<bool> absorbed(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (absorbed[i]) continue;
    const Node& node = g.nodes[i];
    bool folded = true;
    for (const auto& out : node.outputs) {
      folded = folded && (out.empty() || m.shapes.constant(out) != nullptr);
    }
    if (folded) continue;

    Step step;
    step.node = &node;
    step.op = find_op(node.op_type);
    step.label = node.op_type;
    for (const auto& in : node.inputs) step.inputs.push_back(in.empty() ? -1 : m.slot(in));
    std::vector<std::string> outs = node.outputs;

    if (node.op_type == "Conv" && options.fast_conv) {
      const Tensor* weight = m.shapes.constant(node.inputs[1]);
      const ValueInfo* x_info = m.shapes.find(node.inputs[0]);
      const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
      const Tensor* bias = has_bias ? m.shapes.constant(node.inputs[2]) : nullptr;
      if (weight && x_info->dtype == DType::kFloat32 && (!has_bias || bias)) {
        FusionMatch match;
        if (fuse) match = match_activation(g, i, users);
        const ValueInfo* y_info = m.shapes.find(node.outputs[0]);
        auto conv = cpu::OnednnConv::create(node, *weight, bias, x_info->shape, y_info->shape,
                                            match.activation);
        if (conv) {
          step.kernel = Kernel::kConv;
          step.conv = std::move(conv).value();
          step.activation = match.activation;
          step.inputs.resize(1);
          if (match.activation != cpu::FusedActivation::kNone) {
            for (size_t a : match.absorbed) absorbed[a] = true;
            outs = {match.output};
            step.label =
                match.activation == cpu::FusedActivation::kSilu ? "Conv+SiLU" : "Conv+Sigmoid";
          }
        }
      }
    }
    for (const auto& out : outs) step.outputs.push_back(out.empty() ? -1 : m.slot(out));
    m.steps.push_back(std::move(step));
  }
  return Status::ok();
}

bool is_activation_4d(const CpuExecutor::Impl& m, int s) {
  return s >= 0 && !m.is_constant[s] && m.slots[s].dtype() == DType::kFloat32 &&
         m.slots[s].rank() == 4;
}

// Whether a reference step can run on NHWC data by rewriting its attributes.
bool can_run_nhwc(const CpuExecutor::Impl& m, const Step& step) {
  const std::string& op = step.node->op_type;
  auto shape_of = [&](int s) -> const Shape& { return m.logical[s]; };
  if (op == "Sigmoid" || op == "Relu" || op == "Identity")
    return is_activation_4d(m, step.inputs[0]);
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") {
    const int a = step.inputs[0], b = step.inputs[1];
    if (!is_activation_4d(m, a) && !is_activation_4d(m, b)) return false;
    if (is_activation_4d(m, a) && is_activation_4d(m, b)) return shape_of(a) == shape_of(b);
    const int other = is_activation_4d(m, a) ? b : a;
    return m.slots[other].numel() == 1;
  }
  if (op == "Concat") {
    for (int s : step.inputs) {
      if (!is_activation_4d(m, s)) return false;
    }
    const int64_t axis = step.node->get_int("axis", 0);
    return axis == 1 || axis == -3;
  }
  if (op == "MaxPool") return is_activation_4d(m, step.inputs[0]);
  if (op == "Resize") {
    if (!is_activation_4d(m, step.inputs[0])) return false;
    const Shape& out = shape_of(step.outputs[0]);
    const Shape& in = shape_of(step.inputs[0]);
    return out[0] == in[0] && out[1] == in[1];
  }
  return false;
}

// Assigns NHWC to convolutions and the layout-agnostic ops around them, inserting
// transposes where layouts meet, and allocates every activation buffer.
void assign_layouts(CpuExecutor::Impl& m) {
  std::vector<Step> planned;
  std::unordered_map<int, int> converted[2];  // per target layout: slot -> converted slot

  auto convert = [&](int s, Layout to) {
    if (s < 0 || m.layouts[s] == to) return s;
    auto& cache = converted[static_cast<int>(to)];
    if (auto it = cache.find(s); it != cache.end()) return it->second;
    Step step;
    step.owned_node = std::make_unique<Node>();
    step.owned_node->op_type = "Transpose";
    step.owned_node->name = "reorder_" + std::to_string(s);
    step.owned_node->attributes["perm"] =
        Attribute::of_ints(to == Layout::kNhwc ? kToNhwc : kToNchw);
    step.node = step.owned_node.get();
    step.op = find_op("Transpose");
    step.label = to == Layout::kNhwc ? "Reorder>NHWC" : "Reorder>NCHW";
    const int target = m.new_slot();
    m.slots[target] = Tensor(m.slots[s].dtype(),
                             permute(m.slots[s].shape(), to == Layout::kNhwc ? kToNhwc : kToNchw));
    m.layouts[target] = to;
    m.logical[target] = m.logical[s];
    step.inputs = {s};
    step.outputs = {target};
    if (m.slots[s].dtype() == DType::kFloat32) {
      const Shape logical =
          to == Layout::kNhwc ? m.slots[s].shape() : permute(m.slots[s].shape(), kToNchw);
      if (auto reorder = cpu::OnednnPrimitive::reorder(logical, to == Layout::kNhwc)) {
        step.kernel = Kernel::kOnednn;
        step.primitive = std::move(reorder).value();
      }
    }
    planned.push_back(std::move(step));
    cache[s] = target;
    return target;
  };
  auto allocate_outputs = [&](Step& step, Layout layout) {
    for (int s : step.outputs) {
      if (s < 0) continue;
      const Tensor& logical = m.slots[s];
      if (layout == Layout::kNhwc) {
        m.slots[s] = Tensor(logical.dtype(), permute(logical.shape(), kToNhwc));
      }
      m.layouts[s] = layout;
    }
  };

  for (Step& step : m.steps) {
    if (step.kernel == Kernel::kConv) {
      step.inputs[0] = convert(step.inputs[0], Layout::kNhwc);
      allocate_outputs(step, Layout::kNhwc);
    } else {
      bool any_nhwc = false;
      for (int s : step.inputs) any_nhwc = any_nhwc || (s >= 0 && m.layouts[s] == Layout::kNhwc);
      if (any_nhwc && can_run_nhwc(m, step)) {
        for (int& s : step.inputs) {
          if (is_activation_4d(m, s)) s = convert(s, Layout::kNhwc);
        }
        const std::string& op = step.node->op_type;
        if (op == "Concat") {
          step.owned_node = std::make_unique<Node>(*step.node);
          step.owned_node->attributes["axis"] = Attribute::of_int(3);
          step.node = step.owned_node.get();
        } else if (op == "MaxPool") {
          step.kernel = Kernel::kMaxPoolNhwc;
        } else if (op == "Resize") {
          // Give the kernel the NHWC output size through `sizes`, dropping `scales`.
          const Shape nhwc_out = permute(m.logical[step.outputs[0]], kToNhwc);
          const int sizes = m.new_slot();
          m.slots[sizes] = Tensor::from_vector(std::vector<int64_t>(nhwc_out));
          m.is_constant[sizes] = true;
          // Scales must follow the axes too when they drive the coordinate transform.
          const int scales = m.new_slot();
          const Shape& in = m.logical[step.inputs[0]];
          std::vector<float> nhwc_scales = {1.0f, static_cast<float>(nhwc_out[1]) / in[2],
                                            static_cast<float>(nhwc_out[2]) / in[3], 1.0f};
          const int scales_index = step.inputs.size() == 2 ? 1 : 2;
          if (static_cast<int>(step.inputs.size()) > scales_index &&
              step.inputs[scales_index] >= 0 && m.slots[step.inputs[scales_index]].numel() == 4) {
            const auto given = m.slots[step.inputs[scales_index]].to_double();
            nhwc_scales = {static_cast<float>(given[0]), static_cast<float>(given[2]),
                           static_cast<float>(given[3]), static_cast<float>(given[1])};
            m.slots[scales] = Tensor::from_vector(nhwc_scales);
            m.is_constant[scales] = true;
            step.inputs[scales_index] = scales;
            if (step.inputs.size() > 3) step.inputs[3] = -1;
          } else {
            step.inputs.resize(4, -1);
            step.inputs[3] = sizes;
          }
        }
        allocate_outputs(step, Layout::kNhwc);
      } else {
        for (int& s : step.inputs) s = convert(s, Layout::kNchw);
        allocate_outputs(step, Layout::kNchw);
      }
    }
    planned.push_back(std::move(step));
  }
  for (int& s : m.output_slots) s = convert(s, Layout::kNchw);
  m.steps = std::move(planned);
  // Sigmoid does not care about layout; oneDNN's JIT version is much faster than libm's.
  for (Step& step : m.steps) {
    if (step.kernel != Kernel::kReference || step.node->op_type != "Sigmoid") continue;
    const Tensor& x = m.slots[step.inputs[0]];
    if (x.dtype() != DType::kFloat32) continue;
    if (auto sigmoid = cpu::OnednnPrimitive::sigmoid(x.numel())) {
      step.kernel = Kernel::kOnednn;
      step.primitive = std::move(sigmoid).value();
    }
  }
}

}  // namespace

CpuExecutor::CpuExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CpuExecutor::~CpuExecutor() = default;

Expected<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const Graph& graph,
                                                           ExecutorOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.graph = graph;
  QYOLO_RETURN_IF_ERROR(topological_sort(m.graph));
  QYOLO_ASSIGN_OR_RETURN(m.shapes, infer_shapes(m.graph, options.input_shapes));

  for (const auto& input : m.graph.inputs) {
    const ValueInfo* info = m.shapes.find(input.name);
    m.inputs.push_back(*info);
    m.slots[m.slot(input.name)] = Tensor(info->dtype, info->shape);
  }
  // Constants (initializers and folded values) stay in their slots for the executor's life;
  // shapes.constants keeps its copies only until the steps are built.
  for (const auto& [name, tensor] : m.shapes.constants) {
    const int s = m.slot(name);
    m.slots[s] = tensor;
    m.is_constant[s] = true;
  }
  QYOLO_RETURN_IF_ERROR(build_steps(m, options));
  m.shapes.constants.clear();

  // Every produced value gets a buffer of its logical shape; layouts may permute it.
  for (const auto& [name, s] : m.slot_of) {
    if (m.is_constant[s] || !m.slots[s].empty()) continue;
    if (const ValueInfo* info = m.shapes.find(name)) m.slots[s] = Tensor(info->dtype, info->shape);
  }
  for (const auto& output : m.graph.outputs) {
    m.outputs.push_back(*m.shapes.find(output.name));
    m.output_slots.push_back(m.slot(output.name));
  }
  for (size_t s = 0; s < m.slots.size(); ++s) m.logical[s] = m.slots[s].shape();
  assign_layouts(m);
  return std::unique_ptr<CpuExecutor>(new CpuExecutor(std::move(impl)));
}

Expected<std::map<std::string, Tensor>> CpuExecutor::run(
    const std::map<std::string, Tensor>& inputs) {
  Impl& m = *impl_;
  QYOLO_RETURN_IF_ERROR(cpu::check_inputs(m.inputs, inputs));
  for (const auto& expected : m.inputs) {
    m.slots[m.slot_of.at(expected.name)] = inputs.at(expected.name);
  }

  std::vector<const Tensor*> in_ptrs;
  std::vector<Tensor*> out_ptrs;
  for (Step& step : m.steps) {
    const auto start = std::chrono::steady_clock::now();
    in_ptrs.clear();
    out_ptrs.clear();
    for (int s : step.inputs) in_ptrs.push_back(s < 0 ? nullptr : &m.slots[s]);
    for (int s : step.outputs) out_ptrs.push_back(s < 0 ? nullptr : &m.slots[s]);
    Status status;
    switch (step.kernel) {
      case Kernel::kConv:
        status = step.conv->run(*in_ptrs[0], *out_ptrs[0]);
        break;
      case Kernel::kMaxPoolNhwc:
        status = cpu::maxpool_nhwc(*step.node, *in_ptrs[0], *out_ptrs[0]);
        break;
      case Kernel::kOnednn:
        status = step.primitive->run(*in_ptrs[0], *out_ptrs[0]);
        break;
      case Kernel::kReference:
        status = step.op->compute(*step.node, in_ptrs, out_ptrs);
        break;
    }
    if (!status.is_ok()) return with_context(status, step.node->label());
    if (m.profiling) {
      step.milliseconds +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
    }
  }
  std::map<std::string, Tensor> results;
  for (size_t i = 0; i < m.outputs.size(); ++i) {
    results[m.outputs[i].name] = m.slots[m.output_slots[i]];
  }
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
