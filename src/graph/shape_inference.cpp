// Shape inference with constant folding: every node's shape rule runs in order, and a node
// whose inputs are all known is evaluated with its reference kernel, so shape arithmetic
// inside the graph (Shape -> Gather -> Concat -> Reshape) resolves to constants.
#include <set>

#include "qyolo/graph.h"
#include "qyolo/ops.h"

namespace qyolo {
namespace {

// Folding stops at this many output elements: beyond it a node is real work, not shape math.
constexpr int64_t kMaxFoldElements = int64_t{1} << 22;

}  // namespace

Expected<ShapeInfo> infer_shapes(const Graph& graph,
                                 const std::map<std::string, Shape>& input_shapes) {
  QYOLO_RETURN_IF_ERROR(validate(graph));
  ShapeInfo info;
  for (const auto& [name, shape] : input_shapes) {
    if (!graph.find_input(name)) {
      std::string names;
      for (const auto& input : graph.inputs) names += (names.empty() ? "" : ", ") + input.name;
      return not_found("no graph input named '", name, "' (inputs: ", names, ")");
    }
  }
  for (const auto& input : graph.inputs) {
    ValueInfo v = input;
    auto it = input_shapes.find(input.name);
    if (it != input_shapes.end()) {
      if (input.has_shape && input.shape.size() != it->second.size()) {
        return invalid_argument("input '", input.name, "' has rank ", input.shape.size(),
                                ", the given shape ", shape_str(it->second), " has rank ",
                                it->second.size());
      }
      for (size_t d = 0; input.has_shape && d < input.shape.size(); ++d) {
        if (input.shape[d] >= 0 && input.shape[d] != it->second[d]) {
          return invalid_argument("input '", input.name, "' has fixed shape ",
                                  shape_str(input.shape), ", cannot run it as ",
                                  shape_str(it->second));
        }
      }
      v.shape = it->second;
      v.has_shape = true;
      v.dim_params.clear();
    }
    if (!v.has_shape || shape_numel(v.shape) < 0) {
      return invalid_argument("input '", input.name, "' has unknown dimensions (",
                              shape_str(v.shape), "): give its shape explicitly");
    }
    if (dtype_size(v.dtype) == 0) {
      return unsupported("input '", input.name, "' has unsupported type ", dtype_name(v.dtype));
    }
    info.values[input.name] = v;
  }
  for (const auto& [name, tensor] : graph.initializers) {
    ValueInfo v;
    v.name = name;
    v.dtype = tensor.dtype();
    v.has_shape = true;
    v.shape = tensor.shape();
    info.values[name] = v;
    info.constants[name] = tensor;
  }

  const int64_t opset = graph.opset();
  for (const Node& node : graph.nodes) {
    const OpDef* op = find_op(node.op_type);
    InferContext ctx{node, opset, {}, {}, {}};
    bool all_known = true;
    for (const auto& input : node.inputs) {
      if (input.empty()) {
        ctx.inputs.push_back(nullptr);
        ctx.values.push_back(nullptr);
        continue;
      }
      ctx.inputs.push_back(info.find(input));
      const Tensor* value = info.constant(input);
      ctx.values.push_back(value);
      all_known = all_known && value != nullptr;
    }
    ctx.outputs.resize(node.outputs.size());
    QYOLO_RETURN_IF_ERROR(op->infer(ctx));
    for (size_t i = 0; i < node.outputs.size() && i < ctx.outputs.size(); ++i) {
      if (node.outputs[i].empty()) continue;
      ctx.outputs[i].name = node.outputs[i];
      info.values[node.outputs[i]] = ctx.outputs[i];
    }

    if (op->type == OpType::kShape) {
      // Shape needs only the input's shape, which is always known here.
      const std::vector<int64_t>& dims = ctx.inputs[0]->shape;
      Tensor result(DType::kInt64, ctx.outputs[0].shape);
      const int64_t start = ctx.node.get_int("start", 0);
      const int64_t rank = static_cast<int64_t>(dims.size());
      const int64_t first =
          start < 0 ? std::max<int64_t>(0, start + rank) : std::min<int64_t>(start, rank);
      for (int64_t k = 0; k < result.numel(); ++k) result.data<int64_t>()[k] = dims[first + k];
      info.constants[node.outputs[0]] = std::move(result);
      continue;
    }
    int64_t out_elements = 0;
    for (const auto& o : ctx.outputs) out_elements += std::max<int64_t>(shape_numel(o.shape), 0);
    if (!all_known || out_elements > kMaxFoldElements) continue;
    std::vector<const Tensor*> inputs(ctx.values.begin(), ctx.values.end());
    auto folded = run_reference(node, opset, inputs);
    if (!folded) return folded.status();
    for (size_t i = 0; i < node.outputs.size() && i < folded->size(); ++i) {
      if (!node.outputs[i].empty()) info.constants[node.outputs[i]] = std::move((*folded)[i]);
    }
  }
  return info;
}

}  // namespace qyolo
