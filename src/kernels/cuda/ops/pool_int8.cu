// INT8 NHWC MaxPool (SPPF's 5x5/1/2 and any k/s/p) and nearest Resize by an integer factor, on
// channel slices. Selection is exact on int8; a scale change requantizes the selected value, as
// the INT8 executor's kSelect step does (a plain copy when the scales are equal). Where the
// slices hold whole aligned groups of 16 channels (YOLOv5's always do), one thread moves 16
// channels of a pixel: byte-wise signed max (__vmaxs4) and a requantization table in shared
// memory; otherwise one thread per element. A Concat's requantizing copy can be fused
// (FusedCopyInt8).
#include <algorithm>
#include <cmath>

#include "ops_common.cuh"

namespace qyolo::cuda {
namespace {

__device__ __forceinline__ int8_t rescale(int8_t q, float from, float to) {
  return from == to ? q : ops::requantize(q, from, to);
}

// The selected value as y holds it: requantized to output_scale, through mid_scale first when a
// Concat's copy is fused (FusedCopyInt8).
__device__ __forceinline__ int8_t to_output(int8_t q, float in, const FusedCopyInt8& c, float out) {
  return c.mid_scale > 0.0f ? rescale(rescale(q, in, c.mid_scale), c.mid_scale, out)
                            : rescale(q, in, out);
}

// Where pixel `pixel`, channel `c` of y2 is (null without y2).
__device__ __forceinline__ int8_t* y2_at(const FusedCopyInt8& c, int64_t pixel, int channel) {
  return c.y2 ? c.y2 + pixel * c.y2_layout.stride + c.y2_layout.offset + channel : nullptr;
}

// y's value, and y2's where it is set.
__device__ __forceinline__ void store_element(const FusedCopyInt8& c, int8_t* y, int8_t* y2,
                                              int8_t q, float out) {
  *y = q;
  if (c.y2) *y2 = rescale(q, out, c.y2_scale);
}

// Both tables of the 16-channel kernels, indexed by the selected value + 128: y's and y2's.
__device__ __forceinline__ void fill_tables(int8_t* table, int8_t* table2, float in,
                                            const FusedCopyInt8& c, float out) {
  for (int k = threadIdx.x; k < 256; k += blockDim.x) {
    const int8_t q = to_output(static_cast<int8_t>(k - 128), in, c, out);
    table[k] = q;
    table2[k] = rescale(q, out, c.y2_scale);
  }
}

// 16 selected channels to y (and y2).
__device__ __forceinline__ void store16(const FusedCopyInt8& c, bool same, const int8_t* table,
                                        const int8_t* table2, uint4 v, int8_t* y, int8_t* y2) {
  *reinterpret_cast<uint4*>(y) = same ? v : ops::lookup16(table, v);
  if (c.y2) *reinterpret_cast<uint4*>(y2) = ops::lookup16(table2, v);
}

// Output pixel `pixel` (n, y, x) of an out_h x out_w image batch.
struct OutPixel {
  int n, y, x;
};
__device__ __forceinline__ OutPixel out_pixel(int64_t pixel, int out_h, int out_w) {
  return {static_cast<int>(pixel / (int64_t{out_w} * out_h)),
          static_cast<int>((pixel / out_w) % out_h), static_cast<int>(pixel % out_w)};
}

__global__ void maxpool_kernel(MaxPoolInt8Args a, int out_h, int out_w) {
  wait_for_previous_kernel();
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int c = static_cast<int>(i % a.input.channels);
    const int64_t pixel = i / a.input.channels;
    const auto [n, oy, ox] = out_pixel(pixel, out_h, out_w);
    const int y0 = oy * a.stride - a.pad, x0 = ox * a.stride - a.pad;
    int best = -129;
    for (int ky = max(y0, 0); ky < min(y0 + a.kernel, a.input.height); ++ky) {
      const int8_t* row = a.x +
                          ((int64_t{n} * a.input.height + ky) * a.input.width) * a.x_layout.stride +
                          a.x_layout.offset + c;
      for (int kx = max(x0, 0); kx < min(x0 + a.kernel, a.input.width); ++kx)
        best = max(best, static_cast<int>(row[int64_t{kx} * a.x_layout.stride]));
    }
    store_element(a.copy, a.y + pixel * a.y_layout.stride + a.y_layout.offset + c,
                  y2_at(a.copy, pixel, c),
                  to_output(static_cast<int8_t>(best), a.input_scale, a.copy, a.output_scale),
                  a.output_scale);
  }
}

__global__ void resize_kernel(ResizeNearestInt8Args a) {
  wait_for_previous_kernel();
  const int out_h = a.input.height * a.factor, out_w = a.input.width * a.factor;
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int c = static_cast<int>(i % a.input.channels);
    const int64_t pixel = i / a.input.channels;
    const auto [n, oy, ox] = out_pixel(pixel, out_h, out_w);
    const int64_t src =
        (int64_t{n} * a.input.height + oy / a.factor) * a.input.width + ox / a.factor;
    store_element(a.copy, a.y + pixel * a.y_layout.stride + a.y_layout.offset + c,
                  y2_at(a.copy, pixel, c),
                  to_output(a.x[src * a.x_layout.stride + a.x_layout.offset + c], a.input_scale,
                            a.copy, a.output_scale),
                  a.output_scale);
  }
}

// 16 channels of one output pixel a thread; `groups` = channels / 16.
__global__ void maxpool16_kernel(MaxPoolInt8Args a, int out_h, int out_w, int groups) {
  __shared__ int8_t table[256], table2[256];
  fill_tables(table, table2, a.input_scale, a.copy, a.output_scale);
  __syncthreads();
  wait_for_previous_kernel();
  const bool same = a.input_scale == a.output_scale && !(a.copy.mid_scale > 0.0f);
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * groups;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int g = static_cast<int>(i % groups);
    const int64_t pixel = i / groups;
    const auto [n, oy, ox] = out_pixel(pixel, out_h, out_w);
    const int y0 = oy * a.stride - a.pad, x0 = ox * a.stride - a.pad;
    uint4 best = make_uint4(0x80808080u, 0x80808080u, 0x80808080u, 0x80808080u);  // -128
    for (int ky = max(y0, 0); ky < min(y0 + a.kernel, a.input.height); ++ky) {
      const int8_t* row = a.x +
                          ((int64_t{n} * a.input.height + ky) * a.input.width) * a.x_layout.stride +
                          a.x_layout.offset + 16 * g;
      for (int kx = max(x0, 0); kx < min(x0 + a.kernel, a.input.width); ++kx) {
        const uint4 v = *reinterpret_cast<const uint4*>(row + int64_t{kx} * a.x_layout.stride);
        best.x = __vmaxs4(best.x, v.x), best.y = __vmaxs4(best.y, v.y);
        best.z = __vmaxs4(best.z, v.z), best.w = __vmaxs4(best.w, v.w);
      }
    }
    store16(a.copy, same, table, table2, best,
            a.y + pixel * a.y_layout.stride + a.y_layout.offset + 16 * g,
            y2_at(a.copy, pixel, 16 * g));
  }
}

__global__ void resize16_kernel(ResizeNearestInt8Args a, int groups) {
  __shared__ int8_t table[256], table2[256];
  fill_tables(table, table2, a.input_scale, a.copy, a.output_scale);
  __syncthreads();
  wait_for_previous_kernel();
  const bool same = a.input_scale == a.output_scale && !(a.copy.mid_scale > 0.0f);
  const int out_h = a.input.height * a.factor, out_w = a.input.width * a.factor;
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * groups;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int g = static_cast<int>(i % groups);
    const int64_t pixel = i / groups;
    const auto [n, oy, ox] = out_pixel(pixel, out_h, out_w);
    const int64_t src =
        (int64_t{n} * a.input.height + oy / a.factor) * a.input.width + ox / a.factor;
    const uint4 v =
        *reinterpret_cast<const uint4*>(a.x + src * a.x_layout.stride + a.x_layout.offset + 16 * g);
    store16(a.copy, same, table, table2, v,
            a.y + pixel * a.y_layout.stride + a.y_layout.offset + 16 * g,
            y2_at(a.copy, pixel, 16 * g));
  }
}

unsigned grid_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
}

Status check_copy(const char* op, const FusedCopyInt8& c, int channels) {
  if (!(c.mid_scale >= 0.0f) || !std::isfinite(c.mid_scale))
    return invalid_argument(op, ": mid_scale ", c.mid_scale, " is not 0 or a positive scale");
  if (!c.y2) return Status::ok();
  QYOLO_RETURN_IF_ERROR(ops::check_slice(op, "y2", c.y2_layout, channels, c.y2));
  return ops::check_scale(op, "y2_scale", c.y2_scale);
}

// The 16-channel kernels need y2's slice aligned as y's.
bool copy_vector16(const FusedCopyInt8& c, int channels) {
  return !c.y2 || ops::vector16(channels, c.y2_layout, c.y2);
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
  QYOLO_RETURN_IF_ERROR(check_copy(kOp, a.copy, a.input.channels));
  const int64_t total = int64_t{a.input.batch} * out_h * out_w * a.input.channels;
  if (ops::vector16(a.input.channels, a.x_layout, a.x) &&
      ops::vector16(a.input.channels, a.y_layout, a.y) && copy_vector16(a.copy, a.input.channels))
    launch_kernel<maxpool16_kernel>(grid_for(total / 16), dim3(256), 0, stream, a, out_h, out_w,
                                    a.input.channels / 16);
  else
    launch_kernel<maxpool_kernel>(grid_for(total), dim3(256), 0, stream, a, out_h, out_w);
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
  QYOLO_RETURN_IF_ERROR(check_copy(kOp, a.copy, a.input.channels));
  const int64_t total = int64_t{a.input.batch} * a.input.height * a.factor * a.input.width *
                        a.factor * a.input.channels;
  if (ops::vector16(a.input.channels, a.x_layout, a.x) &&
      ops::vector16(a.input.channels, a.y_layout, a.y) && copy_vector16(a.copy, a.input.channels))
    launch_kernel<resize16_kernel>(grid_for(total / 16), dim3(256), 0, stream, a,
                                   a.input.channels / 16);
  else
    launch_kernel<resize_kernel>(grid_for(total), dim3(256), 0, stream, a);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
