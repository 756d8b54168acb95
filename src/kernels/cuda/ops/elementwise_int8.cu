// Element-by-element INT8 NHWC ops on channel slices: the requantizing copy (Concat inputs at
// another scale), the 256-entry lookup (standalone Sigmoid), and the int8 <-> fp16 conversions
// at precision edges. One thread per element (the requantizing copy: 16 channels a thread where
// the slices allow); the arithmetic is the INT8 executor's, exactly.
#include <algorithm>
#include <cmath>

#include "ops_common.cuh"

namespace qyolo::cuda {

Int8Table sigmoid_table(float input_scale, float output_scale) {
  Int8Table table{};
  for (int q = -128; q < 128; ++q) {
    const float x = static_cast<float>(q) * input_scale;
    table.values[q + 128] = quantize_rne(1.0f / (1.0f + std::exp(-x)), output_scale);
  }
  return table;
}

namespace {

// Element i of an NHWC shape: its pixel and channel.
struct Element {
  int64_t pixel;
  int channel;
};

__device__ __forceinline__ Element element(int64_t i, int channels) {
  return {i / channels, static_cast<int>(i % channels)};
}

__global__ void requantize_kernel(RequantizeInt8Args a, int64_t total) {
  wait_for_previous_kernel();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Element e = element(i, a.shape.channels);
    const int8_t q = a.x[e.pixel * a.x_layout.stride + a.x_layout.offset + e.channel];
    a.y[e.pixel * a.y_layout.stride + a.y_layout.offset + e.channel] =
        a.input_scale == a.output_scale ? q : ops::requantize(q, a.input_scale, a.output_scale);
  }
}

// The requantizing copy, 16 channels of a pixel a thread (whole aligned groups, see vector16),
// through a requantization table in shared memory.
__global__ void requantize16_kernel(RequantizeInt8Args a, int64_t total, int groups) {
  __shared__ int8_t table[256];
  ops::fill_requantize_table(table, a.input_scale, a.output_scale);
  __syncthreads();
  wait_for_previous_kernel();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int g = static_cast<int>(i % groups);
    const int64_t pixel = i / groups;
    const uint4 v = *reinterpret_cast<const uint4*>(a.x + pixel * a.x_layout.stride +
                                                    a.x_layout.offset + 16 * g);
    *reinterpret_cast<uint4*>(a.y + pixel * a.y_layout.stride + a.y_layout.offset + 16 * g) =
        ops::lookup16(table, v);
  }
}

__global__ void lookup_kernel(LookupInt8Args a, int64_t total) {
  __shared__ int8_t table[256];
  for (int k = threadIdx.x; k < 256; k += blockDim.x) table[k] = a.table.values[k];
  __syncthreads();
  wait_for_previous_kernel();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Element e = element(i, a.shape.channels);
    const int8_t q = a.x[e.pixel * a.x_layout.stride + a.x_layout.offset + e.channel];
    a.y[e.pixel * a.y_layout.stride + a.y_layout.offset + e.channel] = table[q + 128];
  }
}

__global__ void convert_kernel(ConvertArgs a, int64_t total) {
  wait_for_previous_kernel();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Element e = element(i, a.shape.channels);
    const int64_t from = e.pixel * a.x_layout.stride + a.x_layout.offset + e.channel;
    const int64_t to = e.pixel * a.y_layout.stride + a.y_layout.offset + e.channel;
    if (a.kind == ConvertKind::kInt8ToFloat16) {
      const float v = __fmul_rn(static_cast<float>(static_cast<const int8_t*>(a.x)[from]), a.scale);
      static_cast<uint16_t*>(a.y)[to] = ops::half_bits(v);
    } else {
      const float v = ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]);
      static_cast<int8_t*>(a.y)[to] = ops::quantize_rne(v, a.scale);
    }
  }
}

int64_t elements(const NhwcShape& s) { return int64_t{s.batch} * s.height * s.width * s.channels; }

unsigned grid_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
}

}  // namespace

Status requantize_int8(const RequantizeInt8Args& a, cudaStream_t stream) {
  constexpr const char* kOp = "requantize_int8";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.shape));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.shape.channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, a.shape.channels, a.y));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "input_scale", a.input_scale));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "output_scale", a.output_scale));
  const int64_t total = elements(a.shape);
  if (ops::vector16(a.shape.channels, a.x_layout, a.x) &&
      ops::vector16(a.shape.channels, a.y_layout, a.y))
    launch_kernel<requantize16_kernel>(grid_for(total / 16), dim3(256), 0, stream, a, total / 16,
                                       a.shape.channels / 16);
  else
    launch_kernel<requantize_kernel>(grid_for(total), dim3(256), 0, stream, a, total);
  return ops::launched(kOp);
}

Status lookup_int8(const LookupInt8Args& a, cudaStream_t stream) {
  constexpr const char* kOp = "lookup_int8";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.shape));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.shape.channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, a.shape.channels, a.y));
  const int64_t total = elements(a.shape);
  launch_kernel<lookup_kernel>(grid_for(total), dim3(256), 0, stream, a, total);
  return ops::launched(kOp);
}

Status convert_int8_fp16(const ConvertArgs& a, cudaStream_t stream) {
  constexpr const char* kOp = "convert_int8_fp16";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.shape));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.shape.channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, a.shape.channels, a.y));
  QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "scale", a.scale));
  const int64_t total = elements(a.shape);
  launch_kernel<convert_kernel>(grid_for(total), dim3(256), 0, stream, a, total);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
