// INT8 NHWC MaxPool (SPPF's 5x5/1/2 and any k/s/p) and nearest Resize by an integer factor, on
// channel slices. Selection is exact on int8; a scale change requantizes the selected value, as
// the INT8 executor's kSelect step does (a plain copy when the scales are equal).
#include <algorithm>

#include "ops_common.cuh"

namespace qyolo::cuda {
namespace {

__device__ __forceinline__ int8_t rescale(int8_t q, float from, float to) {
  return from == to ? q : ops::requantize(q, from, to);
}

__global__ void maxpool_kernel(MaxPoolInt8Args a, int out_h, int out_w) {
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int c = static_cast<int>(i % a.input.channels);
    const int64_t pixel = i / a.input.channels;
    const int ox = static_cast<int>(pixel % out_w);
    const int oy = static_cast<int>((pixel / out_w) % out_h);
    const int n = static_cast<int>(pixel / (int64_t{out_w} * out_h));
    const int y0 = oy * a.stride - a.pad, x0 = ox * a.stride - a.pad;
    int best = -129;
    for (int ky = max(y0, 0); ky < min(y0 + a.kernel, a.input.height); ++ky) {
      const int8_t* row = a.x +
                          ((int64_t{n} * a.input.height + ky) * a.input.width) * a.x_layout.stride +
                          a.x_layout.offset + c;
      for (int kx = max(x0, 0); kx < min(x0 + a.kernel, a.input.width); ++kx)
        best = max(best, static_cast<int>(row[int64_t{kx} * a.x_layout.stride]));
    }
    a.y[pixel * a.y_layout.stride + a.y_layout.offset + c] =
        rescale(static_cast<int8_t>(best), a.input_scale, a.output_scale);
  }
}

__global__ void resize_kernel(ResizeNearestInt8Args a) {
  const int out_h = a.input.height * a.factor, out_w = a.input.width * a.factor;
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int c = static_cast<int>(i % a.input.channels);
    const int64_t pixel = i / a.input.channels;
    const int ox = static_cast<int>(pixel % out_w);
    const int oy = static_cast<int>((pixel / out_w) % out_h);
    const int n = static_cast<int>(pixel / (int64_t{out_w} * out_h));
    const int64_t src =
        (int64_t{n} * a.input.height + oy / a.factor) * a.input.width + ox / a.factor;
    a.y[pixel * a.y_layout.stride + a.y_layout.offset + c] = rescale(
        a.x[src * a.x_layout.stride + a.x_layout.offset + c], a.input_scale, a.output_scale);
  }
}

unsigned grid_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
}

}  // namespace

Status maxpool_int8(const MaxPoolInt8Args& a, cudaStream_t stream) {
  constexpr const char* kOp = "maxpool_int8";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.input));
  if (a.kernel < 1 || a.stride < 1 || a.pad < 0 || a.pad >= a.kernel)
    return invalid_argument(kOp, ": kernel ", a.kernel, ", stride ", a.stride, ", pad ", a.pad,
                            " (need kernel >= 1, stride >= 1, 0 <= pad < kernel)");
  const int out_h = pool_out_size(a.input.height, a.kernel, a.stride, a.pad);
  const int out_w = pool_out_size(a.input.width, a.kernel, a.stride, a.pad);
  if (out_h < 1 || out_w < 1)
    return invalid_argument(kOp, ": kernel ", a.kernel, " larger than the padded input ",
                            a.input.height, "x", a.input.width);
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.input.channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, a.input.channels, a.y));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "input_scale", a.input_scale));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "output_scale", a.output_scale));
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  maxpool_kernel<<<grid_for(total), 256, 0, stream>>>(a, out_h, out_w);
  return ops::launched(kOp);
}

Status resize_nearest_int8(const ResizeNearestInt8Args& a, cudaStream_t stream) {
  constexpr const char* kOp = "resize_nearest_int8";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.input));
  if (a.factor < 1) return invalid_argument(kOp, ": factor ", a.factor, " is not positive");
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.input.channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, a.input.channels, a.y));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "input_scale", a.input_scale));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "output_scale", a.output_scale));
  const int64_t total = int64_t{a.input.batch} * a.input.height * a.factor * a.input.width *
                        a.factor * a.input.channels;
  resize_kernel<<<grid_for(total), 256, 0, stream>>>(a);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
