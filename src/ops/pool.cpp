// Reference MaxPool (2-D) and Resize (nearest, any rank). Both work on float and int8 data:
// they only select elements, so they are exact on quantized tensors.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/conv_params.h"
#include "ops/ops_internal.h"

namespace qyolo::ops {
namespace {

// Runs fn(T{}) for the element types selection ops support.
template <typename Fn>
Status dispatch_select(const Node& node, DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(float{});
      return Status::ok();
    case DType::kFloat64:
      fn(double{});
      return Status::ok();
    case DType::kInt8:
      fn(int8_t{});
      return Status::ok();
    case DType::kUInt8:
      fn(uint8_t{});
      return Status::ok();
    default:
      return unsupported(node.label(), ": dtype ", dtype_name(dtype), " is not supported");
  }
}

}  // namespace

Status infer_MaxPool(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  if (x->shape.size() != 4) {
    return unsupported(ctx.node.label(), ": only 2-D pooling is supported, input '", x->name,
                       "' is ", shape_str(x->shape));
  }
  if (ctx.node.outputs.size() > 1 && !ctx.node.outputs[1].empty()) {
    return unsupported(ctx.node.label(), ": the Indices output is not supported");
  }
  if (!ctx.node.has_attribute("kernel_shape")) {
    return invalid_argument(ctx.node.label(), ": kernel_shape is required");
  }
  QYOLO_ASSIGN_OR_RETURN(Window2d win, resolve_window(ctx.node, x->shape[2], x->shape[3], 1, 1));
  set_output(ctx, 0, x->dtype, {x->shape[0], x->shape[1], win.out_h, win.out_w});
  ctx.outputs.resize(ctx.node.outputs.size());
  return Status::ok();
}

Status compute_MaxPool(const Node& node, std::span<const Tensor* const> in,
                       std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  QYOLO_ASSIGN_OR_RETURN(Window2d win, resolve_window(node, xs[2], xs[3], 1, 1));
  return dispatch_select(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const int64_t planes = xs[0] * xs[1], in_h = xs[2], in_w = xs[3];
    const T* x = in[0]->data<T>();
    T* y = out[0]->data<T>();
#pragma omp parallel for
    for (int64_t p = 0; p < planes; ++p) {
      const T* src = x + p * in_h * in_w;
      T* dst = y + p * win.out_h * win.out_w;
      for (int64_t oh = 0; oh < win.out_h; ++oh) {
        for (int64_t ow = 0; ow < win.out_w; ++ow) {
          T best = std::numeric_limits<T>::lowest();
          for (int64_t kh = 0; kh < win.kernel_h; ++kh) {
            const int64_t ih = oh * win.stride_h - win.pad_top + kh * win.dilation_h;
            if (ih < 0 || ih >= in_h) continue;
            for (int64_t kw = 0; kw < win.kernel_w; ++kw) {
              const int64_t iw = ow * win.stride_w - win.pad_left + kw * win.dilation_w;
              if (iw < 0 || iw >= in_w) continue;
              best = std::max(best, src[ih * in_w + iw]);
            }
          }
          dst[oh * win.out_w + ow] = best;
        }
      }
    }
  });
}

namespace {

// The output size of a Resize from its scales or sizes input.
Expected<Shape> resize_output_shape(InferContext& ctx, const Shape& in_shape) {
  const size_t scales_index = ctx.opset >= 11 ? 2 : 1;
  const size_t sizes_index = 3;
  auto present = [&](size_t i) {
    return i < ctx.inputs.size() && ctx.inputs[i] && shape_numel(ctx.inputs[i]->shape) > 0;
  };
  if (present(sizes_index)) {
    QYOLO_ASSIGN_OR_RETURN(auto sizes, constant_ints(ctx, sizes_index, "sizes"));
    if (sizes.size() != in_shape.size()) {
      return invalid_argument(ctx.node.label(), ": sizes has ", sizes.size(), " values for a rank-",
                              in_shape.size(), " input");
    }
    return Shape(sizes.begin(), sizes.end());
  }
  if (!present(scales_index)) {
    return invalid_argument(ctx.node.label(), ": neither scales nor sizes is given");
  }
  if (!ctx.values[scales_index]) {
    return unsupported(ctx.node.label(), ": scales must be a constant known before running");
  }
  const auto scales = ctx.values[scales_index]->to_double();
  if (scales.size() != in_shape.size()) {
    return invalid_argument(ctx.node.label(), ": scales has ", scales.size(), " values for a rank-",
                            in_shape.size(), " input");
  }
  Shape out(in_shape.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (!(scales[i] > 0)) {
      return invalid_argument(ctx.node.label(), ": scale ", scales[i], " must be positive");
    }
    out[i] = static_cast<int64_t>(
        std::floor(static_cast<double>(in_shape[i]) * static_cast<float>(scales[i])));
  }
  return out;
}

// Maps output coordinate `o` to an input index on one axis, as ONNX nearest Resize does.
int64_t nearest_source(int64_t o, int64_t in, int64_t out_size, double scale,
                       const std::string& transform, const std::string& rounding) {
  double x;
  if (transform == "asymmetric") {
    x = o / scale;
  } else if (transform == "align_corners") {
    x = out_size == 1 ? 0.0 : o * (in - 1) / static_cast<double>(out_size - 1);
  } else if (transform == "tf_half_pixel_for_nearest") {
    x = (o + 0.5) / scale;
  } else if (transform == "pytorch_half_pixel") {
    x = out_size > 1 ? (o + 0.5) / scale - 0.5 : 0.0;
  } else {  // half_pixel
    x = (o + 0.5) / scale - 0.5;
  }
  int64_t i;
  if (rounding == "floor") {
    i = static_cast<int64_t>(std::floor(x));
  } else if (rounding == "ceil") {
    i = static_cast<int64_t>(std::ceil(x));
  } else if (rounding == "round_prefer_ceil") {
    i = static_cast<int64_t>(std::floor(x + 0.5));
  } else {  // round_prefer_floor
    i = x == std::floor(x) + 0.5 ? static_cast<int64_t>(std::floor(x))
                                 : static_cast<int64_t>(std::round(x));
  }
  return std::clamp<int64_t>(i, 0, in - 1);
}

}  // namespace

Status infer_Resize(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  const std::string mode = ctx.node.get_string("mode", "nearest");
  if (mode != "nearest") {
    return unsupported(ctx.node.label(), ": mode '", mode, "' is not supported (nearest only)");
  }
  QYOLO_ASSIGN_OR_RETURN(Shape shape, resize_output_shape(ctx, x->shape));
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}

Status compute_Resize(const Node& node, std::span<const Tensor* const> in,
                      std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  const Shape& ys = out[0]->shape();
  const std::string transform = node.get_string("coordinate_transformation_mode", "half_pixel");
  const std::string rounding = node.get_string("nearest_mode", "round_prefer_floor");
  const size_t rank = xs.size();
  // Scales as ONNX defines them: given, or out/in when sizes were given.
  std::vector<double> scales(rank);
  const size_t scales_index = in.size() == 2 ? 1 : 2;
  const bool have_scales = in.size() > scales_index && in[scales_index] &&
                           in[scales_index]->numel() == static_cast<int64_t>(rank);
  const std::vector<double> given =
      have_scales ? in[scales_index]->to_double() : std::vector<double>{};
  for (size_t d = 0; d < rank; ++d) {
    scales[d] = have_scales ? static_cast<float>(given[d])
                            : static_cast<double>(ys[d]) / static_cast<double>(xs[d]);
  }
  std::vector<std::vector<int64_t>> source(rank);
  for (size_t d = 0; d < rank; ++d) {
    source[d].resize(ys[d]);
    for (int64_t o = 0; o < ys[d]; ++o) {
      source[d][o] = nearest_source(o, xs[d], ys[d], scales[d], transform, rounding);
    }
  }
  const auto in_strides = strides_of(xs);
  const auto out_strides = strides_of(ys);
  return dispatch_select(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = in[0]->data<T>();
    T* y = out[0]->data<T>();
    const int64_t n = out[0]->numel();
    const int64_t inner = rank ? ys[rank - 1] : 1;
#pragma omp parallel for if (n > 65536)
    for (int64_t row = 0; row < n / std::max<int64_t>(inner, 1); ++row) {
      int64_t offset = 0, rem = row * inner;
      for (size_t d = 0; d + 1 < rank; ++d) {
        const int64_t coord = rem / out_strides[d];
        rem -= coord * out_strides[d];
        offset += source[d][coord] * in_strides[d];
      }
      const auto& last = source[rank - 1];
      for (int64_t i = 0; i < inner; ++i) y[row * inner + i] = x[offset + last[i]];
    }
  });
}

}  // namespace qyolo::ops
