// Reference QuantizeLinear / DequantizeLinear, per tensor or per axis. Executing both as
// written is fake quantization, so QAT models run on the FP32 path unchanged.
#include <algorithm>
#include <cmath>

#include "ops/ops_internal.h"

namespace qyolo::ops {
namespace {

// Checks the scale/zero-point shapes against the data and returns the quantization axis,
// or -1 for per-tensor.
Expected<int64_t> quant_axis(InferContext& ctx, const ValueInfo* x) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* scale, require_input(ctx, 1));
  const int64_t count = shape_numel(scale->shape);
  if (scale->shape.size() > 1) {
    return invalid_argument(ctx.node.label(), ": scale '", scale->name,
                            "' must be a scalar or 1-D, got ", shape_str(scale->shape));
  }
  if (ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->shape != scale->shape) {
    return invalid_argument(ctx.node.label(), ": zero point '", ctx.inputs[2]->name, "' shape ",
                            shape_str(ctx.inputs[2]->shape), " differs from scale '", scale->name,
                            "' ", shape_str(scale->shape));
  }
  if (scale->shape.empty() || (count == 1 && ctx.opset < 13)) return int64_t{-1};
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, ctx.node.get_int("axis", 1), rank));
  if (x->shape[axis] != count) {
    if (count == 1) return int64_t{-1};
    return invalid_argument(ctx.node.label(), ": scale '", scale->name, "' has ", count,
                            " values but axis ", axis, " of '", x->name, "' has ", x->shape[axis]);
  }
  return axis;
}

// Index of the scale for element i.
struct AxisIndexer {
  int64_t inner = 1, dim = 1;
  bool per_axis = false;
  int64_t operator()(int64_t i) const { return per_axis ? (i / inner) % dim : 0; }
};

AxisIndexer indexer(const Node& node, const Shape& shape, int64_t scale_count) {
  AxisIndexer ix;
  if (scale_count <= 1) return ix;
  const int64_t rank = static_cast<int64_t>(shape.size());
  int64_t axis = node.get_int("axis", 1);
  if (axis < 0) axis += rank;
  ix.per_axis = true;
  ix.dim = shape[axis];
  for (int64_t d = axis + 1; d < rank; ++d) ix.inner *= shape[d];
  return ix;
}

}  // namespace

Status infer_QuantizeLinear(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_RETURN_IF_ERROR(quant_axis(ctx, x).status());
  DType out = DType::kUInt8;
  if (ctx.inputs.size() > 2 && ctx.inputs[2]) out = ctx.inputs[2]->dtype;
  if (out != DType::kInt8 && out != DType::kUInt8) {
    return unsupported(ctx.node.label(), ": zero point type ", dtype_name(out),
                       " is not supported (int8 or uint8)");
  }
  set_output(ctx, 0, out, x->shape);
  return Status::ok();
}

Status compute_QuantizeLinear(const Node& node, std::span<const Tensor* const> in,
                              std::span<Tensor* const> out) {
  const auto x = in[0]->to_double();
  const bool float32 = in[0]->dtype() == DType::kFloat32;
  const auto scales = in[1]->to_double();
  const auto zeros =
      in.size() > 2 && in[2] ? in[2]->to_double() : std::vector<double>(scales.size(), 0.0);
  const AxisIndexer ix = indexer(node, in[0]->shape(), static_cast<int64_t>(scales.size()));
  const bool is_signed = out[0]->dtype() == DType::kInt8;
  const double lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  const int64_t n = in[0]->numel();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = ix(i);
    // Divide in the input's precision, as the ONNX definition does for float32 data.
    const double scaled =
        float32 ? static_cast<double>(static_cast<float>(x[i]) / static_cast<float>(scales[c]))
                : x[i] / scales[c];
    const double q = std::clamp(std::nearbyint(scaled) + zeros[c], lo, hi);
    if (is_signed) {
      out[0]->data<int8_t>()[i] = static_cast<int8_t>(q);
    } else {
      out[0]->data<uint8_t>()[i] = static_cast<uint8_t>(q);
    }
  }
  return Status::ok();
}

Status infer_DequantizeLinear(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_RETURN_IF_ERROR(quant_axis(ctx, x).status());
  const DType scale_type = ctx.inputs[1]->dtype;
  if (scale_type != DType::kFloat32 && scale_type != DType::kFloat64) {
    return unsupported(ctx.node.label(), ": scale type ", dtype_name(scale_type),
                       " is not supported");
  }
  set_output(ctx, 0, scale_type, x->shape);
  return Status::ok();
}

Status compute_DequantizeLinear(const Node& node, std::span<const Tensor* const> in,
                                std::span<Tensor* const> out) {
  const auto x = in[0]->to_double();
  const auto scales = in[1]->to_double();
  const auto zeros =
      in.size() > 2 && in[2] ? in[2]->to_double() : std::vector<double>(scales.size(), 0.0);
  const AxisIndexer ix = indexer(node, in[0]->shape(), static_cast<int64_t>(scales.size()));
  const int64_t n = in[0]->numel();
  return dispatch_float(node, out[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* y = out[0]->data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = ix(i);
      y[i] = static_cast<T>(static_cast<T>(x[i] - zeros[c]) * static_cast<T>(scales[c]));
    }
  });
}

}  // namespace qyolo::ops
