#include "runtime/backends/cpu/maxpool_nhwc.h"

#include <algorithm>
#include <limits>

#include "ops/conv_params.h"

namespace qyolo::cpu {

Status maxpool_nhwc(const Node& node, const Tensor& input, Tensor& output) {
  const Shape& xs = input.shape();  // N, H, W, C
  QYOLO_ASSIGN_OR_RETURN(ops::Window2d win, ops::resolve_window(node, xs[1], xs[2], 1, 1));
  const int64_t batch = xs[0], in_h = xs[1], in_w = xs[2], channels = xs[3];
  const float* x = input.data<float>();
  float* y = output.data<float>();
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oh = 0; oh < win.out_h; ++oh) {
      for (int64_t ow = 0; ow < win.out_w; ++ow) {
        float* dst = y + ((n * win.out_h + oh) * win.out_w + ow) * channels;
        std::fill(dst, dst + channels, std::numeric_limits<float>::lowest());
        for (int64_t kh = 0; kh < win.kernel_h; ++kh) {
          const int64_t ih = oh * win.stride_h - win.pad_top + kh * win.dilation_h;
          if (ih < 0 || ih >= in_h) continue;
          for (int64_t kw = 0; kw < win.kernel_w; ++kw) {
            const int64_t iw = ow * win.stride_w - win.pad_left + kw * win.dilation_w;
            if (iw < 0 || iw >= in_w) continue;
            const float* src = x + ((n * in_h + ih) * in_w + iw) * channels;
            for (int64_t c = 0; c < channels; ++c) dst[c] = std::max(dst[c], src[c]);
          }
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace qyolo::cpu
