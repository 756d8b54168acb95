#include <algorithm>

#include "ops/ops_internal.h"

namespace qyolo {
namespace {

const std::vector<OpDef>& table() {
  static const std::vector<OpDef> defs = [] {
    std::vector<OpDef> out;
#define QYOLO_OP_DEF(name, min_inputs, max_inputs)                                        \
  out.push_back(OpDef{OpType::k##name, #name, min_inputs, max_inputs, &ops::infer_##name, \
                      &ops::compute_##name});
    QYOLO_OPS(QYOLO_OP_DEF)
#undef QYOLO_OP_DEF
    return out;
  }();
  return defs;
}

}  // namespace

const OpDef* find_op(std::string_view op_type) {
  for (const auto& def : table()) {
    if (op_type == def.name) return &def;
  }
  return nullptr;
}

std::span<const OpDef> all_ops() { return table(); }

Expected<std::vector<Tensor>> run_reference(const Node& node, int64_t opset,
                                            const std::vector<const Tensor*>& inputs) {
  const OpDef* op = find_op(node.op_type);
  if (!op) return unsupported("unsupported op ", node.label());
  std::vector<ValueInfo> infos(inputs.size());
  InferContext ctx{node, opset, {}, {}, {}};
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) {
      ctx.inputs.push_back(nullptr);
      ctx.values.push_back(nullptr);
      continue;
    }
    infos[i].name = i < node.inputs.size() ? node.inputs[i] : "";
    infos[i].dtype = inputs[i]->dtype();
    infos[i].has_shape = true;
    infos[i].shape = inputs[i]->shape();
    ctx.inputs.push_back(&infos[i]);
    ctx.values.push_back(inputs[i]);
  }
  ctx.outputs.resize(node.outputs.size());
  QYOLO_RETURN_IF_ERROR(op->infer(ctx));
  std::vector<Tensor> outputs;
  std::vector<Tensor*> output_ptrs;
  outputs.reserve(ctx.outputs.size());
  for (const auto& info : ctx.outputs) outputs.emplace_back(info.dtype, info.shape);
  for (auto& t : outputs) output_ptrs.push_back(&t);
  QYOLO_RETURN_IF_ERROR(op->compute(node, inputs, output_ptrs));
  return outputs;
}

namespace ops {

Expected<int64_t> normalize_axis(const Node& node, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    return invalid_argument(node.label(), ": axis ", axis, " is out of range for rank ", rank);
  }
  return axis < 0 ? axis + rank : axis;
}

Expected<Shape> broadcast_shapes(const Node& node, const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      return invalid_argument(node.label(), ": shapes ", shape_str(a), " and ", shape_str(b),
                              " cannot be broadcast");
    }
  }
  return out;
}

Expected<const ValueInfo*> require_input(InferContext& ctx, size_t index) {
  if (index >= ctx.inputs.size() || !ctx.inputs[index]) {
    return invalid_argument(ctx.node.label(), ": input ", index, " is missing");
  }
  const ValueInfo* info = ctx.inputs[index];
  if (!info->has_shape) {
    return invalid_argument(ctx.node.label(), ": the shape of input '", info->name, "' is unknown");
  }
  return info;
}

Expected<std::vector<int64_t>> constant_ints(InferContext& ctx, size_t index, const char* what) {
  if (index >= ctx.values.size() || !ctx.values[index]) {
    return unsupported(ctx.node.label(), ": ", what, " (input ", index,
                       ") must be a constant known before running");
  }
  return ctx.values[index]->to_int64();
}

std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * shape[i + 1];
  }
  return strides;
}

}  // namespace ops
}  // namespace qyolo
