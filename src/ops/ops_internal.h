// Shared declarations of the reference kernels and the helpers they use.
#pragma once

#include <span>
#include <vector>

#include "qyolo/ops.h"

namespace qyolo::ops {

#define QYOLO_DECLARE_OP(name, min_inputs, max_inputs)                           \
  Status infer_##name(InferContext& ctx);                                        \
  Status compute_##name(const Node& node, std::span<const Tensor* const> inputs, \
                        std::span<Tensor* const> outputs);
QYOLO_OPS(QYOLO_DECLARE_OP)
#undef QYOLO_DECLARE_OP

// Normalises a possibly negative axis into [0, rank); error names the node.
Expected<int64_t> normalize_axis(const Node& node, int64_t axis, int64_t rank);

// Numpy-style broadcast of two shapes; error names the node and both shapes.
Expected<Shape> broadcast_shapes(const Node& node, const Shape& a, const Shape& b);

// Sets output `index` of the context.
inline void set_output(InferContext& ctx, size_t index, DType dtype, Shape shape) {
  if (ctx.outputs.size() <= index) ctx.outputs.resize(index + 1);
  ctx.outputs[index].dtype = dtype;
  ctx.outputs[index].has_shape = true;
  ctx.outputs[index].shape = std::move(shape);
}

// The input's info, or an error naming the node when the input's shape is unknown.
Expected<const ValueInfo*> require_input(InferContext& ctx, size_t index);

// A constant input's value as int64 list; error naming the node when it is not constant.
Expected<std::vector<int64_t>> constant_ints(InferContext& ctx, size_t index, const char* what);

// Runs `fn.template operator()<T>()` for a float32 or float64 tensor dtype.
template <typename Fn>
Status dispatch_float(const Node& node, DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(float{});
      return Status::ok();
    case DType::kFloat64:
      fn(double{});
      return Status::ok();
    default:
      return unsupported(node.label(), ": dtype ", dtype_name(dtype),
                         " is not supported (float32 or float64 expected)");
  }
}

// Row-major strides of `shape`.
std::vector<int64_t> strides_of(const Shape& shape);

}  // namespace qyolo::ops
