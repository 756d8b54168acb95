// Reference Conv (2-D, grouped, dilated, padded) as plain loops, float32 and float64.
#include <algorithm>
#include <cmath>

#include "ops/conv_params.h"
#include "ops/ops_internal.h"

namespace qyolo::ops {

Expected<Window2d> resolve_window(const Node& node, int64_t in_h, int64_t in_w, int64_t kernel_h,
                                  int64_t kernel_w) {
  Window2d w;
  const auto kernel = node.get_ints("kernel_shape", {kernel_h, kernel_w});
  const auto strides = node.get_ints("strides", {1, 1});
  const auto dilations = node.get_ints("dilations", {1, 1});
  auto pads = node.get_ints("pads", {0, 0, 0, 0});
  if (kernel.size() != 2 || strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) {
    return unsupported(node.label(), ": only 2-D windows are supported (kernel_shape ",
                       kernel.size(), "-D)");
  }
  w.kernel_h = kernel[0];
  w.kernel_w = kernel[1];
  w.stride_h = strides[0];
  w.stride_w = strides[1];
  w.dilation_h = dilations[0];
  w.dilation_w = dilations[1];
  if (w.kernel_h <= 0 || w.kernel_w <= 0 || w.stride_h <= 0 || w.stride_w <= 0 ||
      w.dilation_h <= 0 || w.dilation_w <= 0) {
    return invalid_argument(node.label(), ": kernel, strides and dilations must be positive");
  }
  const int64_t extent_h = (w.kernel_h - 1) * w.dilation_h + 1;
  const int64_t extent_w = (w.kernel_w - 1) * w.dilation_w + 1;
  const std::string auto_pad = node.get_string("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const int64_t out_h = (in_h + w.stride_h - 1) / w.stride_h;
    const int64_t out_w = (in_w + w.stride_w - 1) / w.stride_w;
    const int64_t total_h = std::max<int64_t>(0, (out_h - 1) * w.stride_h + extent_h - in_h);
    const int64_t total_w = std::max<int64_t>(0, (out_w - 1) * w.stride_w + extent_w - in_w);
    const bool upper = auto_pad == "SAME_UPPER";
    pads = {
        upper ? total_h / 2 : total_h - total_h / 2, upper ? total_w / 2 : total_w - total_w / 2,
        upper ? total_h - total_h / 2 : total_h / 2, upper ? total_w - total_w / 2 : total_w / 2};
  } else if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad != "NOTSET") {
    return invalid_argument(node.label(), ": unknown auto_pad '", auto_pad, "'");
  }
  w.pad_top = pads[0];
  w.pad_left = pads[1];
  w.pad_bottom = pads[2];
  w.pad_right = pads[3];
  const bool ceil_mode = node.get_int("ceil_mode", 0) != 0;
  auto out_size = [&](int64_t in, int64_t pad, int64_t extent, int64_t stride) {
    const int64_t span = in + pad - extent;
    if (span < 0) return int64_t{-1};
    return (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  };
  w.out_h = out_size(in_h, w.pad_top + w.pad_bottom, extent_h, w.stride_h);
  w.out_w = out_size(in_w, w.pad_left + w.pad_right, extent_w, w.stride_w);
  if (w.out_h <= 0 || w.out_w <= 0) {
    return invalid_argument(node.label(), ": the ", extent_h, "x", extent_w,
                            " window does not fit the padded ", in_h, "x", in_w, " input");
  }
  return w;
}

std::string conv_int8_unsupported(const Node& node, const Shape& x, const Shape& w) {
  if (node.get_int("group", 1) != 1) return "grouped convolution";
  auto win = resolve_window(node, x[2], x[3], w[2], w[3]);
  if (!win) return win.status().message();
  if (win->kernel_h != win->kernel_w) return "non-square kernel";
  if (win->stride_h != win->stride_w) return "unequal strides";
  if (win->dilation_h != 1 || win->dilation_w != 1) return "dilation";
  if (win->pad_top != win->pad_left || win->pad_top != win->pad_bottom ||
      win->pad_top != win->pad_right)
    return "asymmetric padding";
  return "";
}

Status infer_Conv(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* w, require_input(ctx, 1));
  if (x->shape.size() != 4 || w->shape.size() != 4) {
    return unsupported(ctx.node.label(), ": only 2-D convolution (rank-4 input '", x->name,
                       "' and weight '", w->name, "') is supported, got ", shape_str(x->shape),
                       " and ", shape_str(w->shape));
  }
  const int64_t group = ctx.node.get_int("group", 1);
  if (group <= 0 || x->shape[1] != w->shape[1] * group || w->shape[0] % group != 0) {
    return invalid_argument(ctx.node.label(), ": input '", x->name, "' has ", x->shape[1],
                            " channels but weight '", w->shape.size() ? w->name : "", "' expects ",
                            w->shape[1] * group, " (", shape_str(w->shape), ", group ", group, ")");
  }
  if (ctx.inputs.size() > 2 && ctx.inputs[2]) {
    const ValueInfo* b = ctx.inputs[2];
    if (b->shape != Shape{w->shape[0]}) {
      return invalid_argument(ctx.node.label(), ": bias '", b->name, "' has shape ",
                              shape_str(b->shape), ", expected ", w->shape[0]);
    }
  }
  QYOLO_ASSIGN_OR_RETURN(
      Window2d win, resolve_window(ctx.node, x->shape[2], x->shape[3], w->shape[2], w->shape[3]));
  if (win.kernel_h != w->shape[2] || win.kernel_w != w->shape[3]) {
    return invalid_argument(ctx.node.label(), ": kernel_shape ", win.kernel_h, "x", win.kernel_w,
                            " disagrees with weight '", w->name, "' ", shape_str(w->shape));
  }
  set_output(ctx, 0, x->dtype, {x->shape[0], w->shape[0], win.out_h, win.out_w});
  return Status::ok();
}

Status compute_Conv(const Node& node, std::span<const Tensor* const> in,
                    std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  const Shape& ws = in[1]->shape();
  QYOLO_ASSIGN_OR_RETURN(Window2d win, resolve_window(node, xs[2], xs[3], ws[2], ws[3]));
  const int64_t group = node.get_int("group", 1);
  const Tensor* bias = in.size() > 2 ? in[2] : nullptr;
  if (in[1]->dtype() != in[0]->dtype() || (bias && bias->dtype() != in[0]->dtype())) {
    return invalid_argument(node.label(), ": input, weight and bias dtypes differ");
  }
  return dispatch_float(node, in[0]->dtype(), [&](auto zero) {
    using T = decltype(zero);
    const int64_t batch = xs[0], in_c = xs[1], in_h = xs[2], in_w = xs[3];
    const int64_t out_c = ws[0], group_in = ws[1], group_out = out_c / group;
    const int64_t out_h = win.out_h, out_w = win.out_w;
    const T* x = in[0]->data<T>();
    const T* w = in[1]->data<T>();
    const T* b = bias ? bias->data<T>() : nullptr;
    T* y = out[0]->data<T>();
#pragma omp parallel for collapse(2)
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t oc = 0; oc < out_c; ++oc) {
        const int64_t g = oc / group_out;
        T* plane = y + (n * out_c + oc) * out_h * out_w;
        std::fill(plane, plane + out_h * out_w, b ? b[oc] : T{0});
        for (int64_t ic = 0; ic < group_in; ++ic) {
          const T* src = x + (n * in_c + g * group_in + ic) * in_h * in_w;
          for (int64_t kh = 0; kh < win.kernel_h; ++kh) {
            for (int64_t kw = 0; kw < win.kernel_w; ++kw) {
              const T weight = w[((oc * group_in + ic) * win.kernel_h + kh) * win.kernel_w + kw];
              for (int64_t oh = 0; oh < out_h; ++oh) {
                const int64_t ih = oh * win.stride_h - win.pad_top + kh * win.dilation_h;
                if (ih < 0 || ih >= in_h) continue;
                for (int64_t ow = 0; ow < out_w; ++ow) {
                  const int64_t iw = ow * win.stride_w - win.pad_left + kw * win.dilation_w;
                  if (iw < 0 || iw >= in_w) continue;
                  plane[oh * out_w + ow] += weight * src[ih * in_w + iw];
                }
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace qyolo::ops
