// Reference kernels for element-wise ops: binary arithmetic with numpy broadcasting,
// Sigmoid, Relu, Identity, Cast and inference-mode BatchNormalization.
#include <cmath>
#include <cstring>

#include "ops/ops_internal.h"

namespace qyolo::ops {
namespace {

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kPow };

template <typename T>
inline T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      if constexpr (std::is_integral_v<T>) return b == 0 ? T{0} : a / b;
      return a / b;
    case BinaryOp::kPow:
      return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
  }
  return T{};
}

template <typename T>
inline T power(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (b == T{2}) return a * a;  // the YOLOv5 head squares; keep it exact and fast
    return std::pow(a, b);
  }
  return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
}

template <typename T>
void binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  auto f = [op](T x, T y) { return op == BinaryOp::kPow ? power(x, y) : apply(op, x, y); };
  if (a.numel() == n && b.numel() == n) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  if (a.numel() == n && b.numel() == 1) {
    const T y = pb[0];
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], y);
    return;
  }
  if (b.numel() == n && a.numel() == 1) {
    const T x = pa[0];
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = f(x, pb[i]);
    return;
  }
  // General broadcast: map each output index to both inputs through zero-strided dims.
  const Shape& shape = out.shape();
  const size_t rank = shape.size();
  auto broadcast_strides = [&](const Shape& s) {
    std::vector<int64_t> own = strides_of(s);
    std::vector<int64_t> st(rank, 0);
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t k = rank - s.size() + i;
      st[k] = s[i] == 1 ? 0 : own[i];
    }
    return st;
  };
  const std::vector<int64_t> sa = broadcast_strides(a.shape());
  const std::vector<int64_t> sb = broadcast_strides(b.shape());
  const std::vector<int64_t> so = strides_of(shape);
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    int64_t ia = 0, ib = 0, rem = i;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t coord = rem / so[d];
      rem -= coord * so[d];
      ia += coord * sa[d];
      ib += coord * sb[d];
    }
    po[i] = f(pa[ia], pb[ib]);
  }
}

Status infer_binary(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* a, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* b, require_input(ctx, 1));
  if (a->dtype != b->dtype && ctx.node.op_type != "Pow") {
    return invalid_argument(ctx.node.label(), ": input dtypes differ (", dtype_name(a->dtype),
                            " and ", dtype_name(b->dtype), ")");
  }
  QYOLO_ASSIGN_OR_RETURN(Shape shape, broadcast_shapes(ctx.node, a->shape, b->shape));
  set_output(ctx, 0, a->dtype, shape);
  return Status::ok();
}

Status compute_binary(BinaryOp op, const Node& node, std::span<const Tensor* const> in,
                      std::span<Tensor* const> out) {
  const Tensor& a = *in[0];
  const Tensor* b = in[1];
  Tensor converted;
  if (b->dtype() != a.dtype()) {  // Pow's exponent may have another type
    QYOLO_ASSIGN_OR_RETURN(converted, cast_tensor(*b, a.dtype()));
    b = &converted;
  }
  switch (a.dtype()) {
    case DType::kFloat32:
      binary_kernel<float>(op, a, *b, *out[0]);
      break;
    case DType::kFloat64:
      binary_kernel<double>(op, a, *b, *out[0]);
      break;
    case DType::kInt32:
      binary_kernel<int32_t>(op, a, *b, *out[0]);
      break;
    case DType::kInt64:
      binary_kernel<int64_t>(op, a, *b, *out[0]);
      break;
    default:
      return unsupported(node.label(), ": dtype ", dtype_name(a.dtype()), " is not supported");
  }
  return Status::ok();
}

Status infer_same(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  set_output(ctx, 0, x->dtype, x->shape);
  return Status::ok();
}

}  // namespace

Status infer_Add(InferContext& ctx) { return infer_binary(ctx); }
Status infer_Sub(InferContext& ctx) { return infer_binary(ctx); }
Status infer_Mul(InferContext& ctx) { return infer_binary(ctx); }
Status infer_Div(InferContext& ctx) { return infer_binary(ctx); }
Status infer_Pow(InferContext& ctx) { return infer_binary(ctx); }

Status compute_Add(const Node& n, std::span<const Tensor* const> i, std::span<Tensor* const> o) {
  return compute_binary(BinaryOp::kAdd, n, i, o);
}
Status compute_Sub(const Node& n, std::span<const Tensor* const> i, std::span<Tensor* const> o) {
  return compute_binary(BinaryOp::kSub, n, i, o);
}
Status compute_Mul(const Node& n, std::span<const Tensor* const> i, std::span<Tensor* const> o) {
  return compute_binary(BinaryOp::kMul, n, i, o);
}
Status compute_Div(const Node& n, std::span<const Tensor* const> i, std::span<Tensor* const> o) {
  return compute_binary(BinaryOp::kDiv, n, i, o);
}
Status compute_Pow(const Node& n, std::span<const Tensor* const> i, std::span<Tensor* const> o) {
  return compute_binary(BinaryOp::kPow, n, i, o);
}

Status infer_Sigmoid(InferContext& ctx) { return infer_same(ctx); }
Status compute_Sigmoid(const Node& node, std::span<const Tensor* const> in,
                       std::span<Tensor* const> out) {
  return dispatch_float(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = in[0]->data<T>();
    T* y = out[0]->data<T>();
    const int64_t n = in[0]->numel();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) y[i] = T{1} / (T{1} + std::exp(-x[i]));
  });
}

Status infer_Relu(InferContext& ctx) { return infer_same(ctx); }
Status compute_Relu(const Node& node, std::span<const Tensor* const> in,
                    std::span<Tensor* const> out) {
  return dispatch_float(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = in[0]->data<T>();
    T* y = out[0]->data<T>();
    const int64_t n = in[0]->numel();
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T{0} ? x[i] : T{0};
  });
}

Status infer_Identity(InferContext& ctx) { return infer_same(ctx); }
Status compute_Identity(const Node&, std::span<const Tensor* const> in,
                        std::span<Tensor* const> out) {
  if (in[0]->nbytes()) std::memcpy(out[0]->raw(), in[0]->raw(), in[0]->nbytes());
  return Status::ok();
}

Status infer_Cast(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  const int64_t to = ctx.node.get_int("to", 0);
  if (!dtype_is_known(static_cast<int32_t>(to))) {
    return unsupported(ctx.node.label(), ": cast to ONNX type ", to, " is not supported");
  }
  set_output(ctx, 0, static_cast<DType>(to), x->shape);
  return Status::ok();
}
Status compute_Cast(const Node& node, std::span<const Tensor* const> in,
                    std::span<Tensor* const> out) {
  QYOLO_ASSIGN_OR_RETURN(Tensor converted, cast_tensor(*in[0], out[0]->dtype()));
  *out[0] = std::move(converted);
  return Status::ok();
}

Status infer_BatchNormalization(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  if (x->shape.size() < 2) {
    return invalid_argument(ctx.node.label(), ": input '", x->name, "' must have rank >= 2");
  }
  for (size_t k = 1; k < 5; ++k) {
    QYOLO_ASSIGN_OR_RETURN(const ValueInfo* p, require_input(ctx, k));
    if (p->shape != Shape{x->shape[1]}) {
      return invalid_argument(ctx.node.label(), ": parameter '", p->name, "' has shape ",
                              shape_str(p->shape), ", expected ", x->shape[1]);
    }
  }
  set_output(ctx, 0, x->dtype, x->shape);
  ctx.outputs.resize(1);  // training-mode outputs are not produced
  return Status::ok();
}
Status compute_BatchNormalization(const Node& node, std::span<const Tensor* const> in,
                                  std::span<Tensor* const> out) {
  const double epsilon = node.get_float("epsilon", 1e-5f);
  return dispatch_float(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Shape& shape = in[0]->shape();
    const int64_t batch = shape[0], channels = shape[1];
    const int64_t inner = in[0]->numel() / std::max<int64_t>(batch * channels, 1);
    const auto scale = in[1]->to_double(), bias = in[2]->to_double();
    const auto mean = in[3]->to_double(), var = in[4]->to_double();
    const T* x = in[0]->data<T>();
    T* y = out[0]->data<T>();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t c = 0; c < channels; ++c) {
        const T a = static_cast<T>(scale[c] / std::sqrt(var[c] + epsilon));
        const T shift = static_cast<T>(bias[c] - mean[c] * scale[c] / std::sqrt(var[c] + epsilon));
        const int64_t base = (b * channels + c) * inner;
        for (int64_t i = 0; i < inner; ++i) y[base + i] = x[base + i] * a + shift;
      }
    }
  });
}

}  // namespace qyolo::ops
