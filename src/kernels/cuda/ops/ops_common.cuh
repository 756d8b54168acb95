// Shared pieces of the non-convolution kernels: IEEE-exact rounding helpers (every float
// operation the CPU reference performs is spelled as an _rn intrinsic, so nvcc cannot contract
// it into an FMA and the result is bit-identical), launch checks, and argument checks.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>

#include "../launch.cuh"
#include "qyolo/cuda.h"
#include "qyolo/cuda_ops.h"

namespace qyolo::cuda::ops {

// quantize_rne of qyolo/conv_int8.h: rne(y / scale), clamped.
__device__ __forceinline__ int8_t quantize_rne(float y, float scale) {
  const float q = rintf(__fdiv_rn(y, scale));
  return static_cast<int8_t>(fminf(fmaxf(q, -128.0f), 127.0f));
}

// The INT8 executor's requantization: q * from, then quantized to `to`.
__device__ __forceinline__ int8_t requantize(int8_t q, float from, float to) {
  return quantize_rne(__fmul_rn(static_cast<float>(q), from), to);
}

// 16 channels a thread: the slices of a vectorised int8 kernel must hold whole, 16-byte
// aligned groups of 16 channels (YOLOv5's Concat inputs, upsampling and SPPF all do). On an
// H200 this took yolov5s at batch 64 from 8,121 to 11,562 images/s (Requantize 1.55 -> 0.23 ms,
// MaxPool 0.53 -> 0.09 ms). QYOLO_CUDA_INT8_OPS16=0 keeps the one-channel-a-thread kernels, for
// comparison.
inline bool vector16(int channels, const ChannelSlice& s, const void* base) {
  static const bool off = [] {
    const char* v = std::getenv("QYOLO_CUDA_INT8_OPS16");
    return v && v[0] == '0';
  }();
  return !off && channels % 16 == 0 && s.stride % 16 == 0 && s.offset % 16 == 0 &&
         reinterpret_cast<uintptr_t>(base) % 16 == 0;
}

// The requantization of every int8 value from one scale to another, as a 256-entry table in
// shared memory, computed by the block with requantize() itself (so it is exact); the caller
// syncs. An identity table when the scales are equal.
__device__ __forceinline__ void fill_requantize_table(int8_t* table, float from, float to) {
  for (int k = threadIdx.x; k < 256; k += blockDim.x) {
    const int8_t q = static_cast<int8_t>(k - 128);
    table[k] = from == to ? q : requantize(q, from, to);
  }
}

// The table applied to the 16 bytes of v.
__device__ __forceinline__ uint4 lookup16(const int8_t* table, uint4 v) {
  uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint32_t r = 0;
#pragma unroll
    for (int b = 0; b < 4; ++b)
      r |= uint32_t(uint8_t(table[int(int8_t(w[i] >> (8 * b))) + 128])) << (8 * b);
    w[i] = r;
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ uint16_t half_bits(float v) {
  return __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ float from_half_bits(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

inline Status launched(const char* op) { return check(cudaGetLastError(), op); }

inline unsigned blocks_for(int64_t threads, int per_block) {
  return static_cast<unsigned>((threads + per_block - 1) / per_block);
}

inline Status check_shape(const char* op, const NhwcShape& s) {
  if (s.batch < 1 || s.height < 1 || s.width < 1 || s.channels < 1)
    return invalid_argument(op, ": non-positive shape ", s.batch, "x", s.height, "x", s.width, "x",
                            s.channels);
  return Status::ok();
}

inline Status check_slice(const char* op, const char* name, const ChannelSlice& slice, int channels,
                          const void* pointer) {
  if (!pointer) return invalid_argument(op, ": ", name, " is null");
  if (slice.offset < 0 || slice.offset + channels > slice.stride)
    return invalid_argument(op, ": ", name, " channels [", slice.offset, ", ",
                            slice.offset + channels, ") do not fit the pixel stride ",
                            slice.stride);
  return Status::ok();
}

inline Status check_scale(const char* op, const char* name, float scale) {
  if (!(scale > 0.0f) || scale != scale || scale > 3.4e38f)
    return invalid_argument(op, ": ", name, " ", scale, " is not a positive finite number");
  return Status::ok();
}

}  // namespace qyolo::cuda::ops
