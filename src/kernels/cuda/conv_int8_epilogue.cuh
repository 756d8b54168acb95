// The fused epilogue on the GPU (qyolo/conv_int8.h states the contract), shared by the
// mma.sync and the wgmma kernels: accumulators in registers in the m16n8 fragment layout ->
// dequantize, bias, SiLU -> a 16-row slab per warp in shared memory -> residual add, int8 or
// half conversion, 16-byte stores into the output's channel slice.
//
// Dequantization and the residual add are the reference's single-rounding fma, so without SiLU
// the value before requantization is bit-identical. SiLU uses the fast exp and divide, and
// requantization multiplies by 1/output_scale instead of dividing: a quantized output can then
// differ from the reference by one step, only where y / output_scale lies within a few ulps of
// a rounding boundary. Exact versions would cost ~30 instructions per element; on the 1x1
// layers with 32-64 channels the epilogue, not memory, would then be the limit.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "conv_int8_params.h"

namespace qyolo::cuda {

__device__ __forceinline__ float dequantize(int32_t acc, float channel_scale, float bias) {
  return __fmaf_rn(__int2float_rn(acc), channel_scale, bias);
}

// y * sigmoid(y) = y / (1 + 2^(-y * log2 e)), with the flush-to-zero approximate exp2 and
// reciprocal (one MUFU each, no denormal fix-ups). Large negative y: 2^.. = inf, rcp(inf) = 0.
__device__ __forceinline__ float silu(float y) {
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(y * -1.4426950408889634f));
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
  return y * r;
}

__device__ __forceinline__ float add_residual(float y, int8_t residual, float residual_scale) {
  return __fmaf_rn(static_cast<float>(residual), residual_scale, y);
}

// Saturate, then round half to even by adding 1.5 * 2^23: the sum's low mantissa bits are the
// rounded integer, and its low byte is the int8 result. Same value as clamp(__float2int_rn),
// without the quarter-rate conversion instruction.
__device__ __forceinline__ uint32_t requantize_bits(float y, float inv_output_scale) {
  const float v = fminf(fmaxf(__fmul_rn(y, inv_output_scale), -128.0f), 127.0f);
  return __float_as_uint(__fadd_rn(v, 12582912.0f));
}

// The low bytes of four words, first word in the low byte.
__device__ __forceinline__ uint32_t pack_low_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

__device__ __forceinline__ int8_t int8_at(uint32_t word, int byte) {
  return static_cast<int8_t>(word >> (8 * byte));
}

// Stores one staged 16-row slab (floats, or int32 bits for kOutInt32), kVec channels per item.
template <int kCols, int kStride, int kKind>
__device__ __forceinline__ void store_slab(const ConvInt8Params& p, const float* stage, int m_base,
                                           int n_base, int lane) {
  constexpr int kVec = kKind == kOutInt8 ? 16 : kKind == kOutFloat16 ? 8 : 4;
  constexpr int kPerRow = kCols / kVec;
  for (int item = lane; item < 16 * kPerRow; item += 32) {
    const int row = item / kPerRow;
    const int n = n_base + (item % kPerRow) * kVec;
    const int m = m_base + row;
    if (m >= p.pixels || n >= p.cout) continue;
    const float* y = stage + row * kStride + (item % kPerRow) * kVec;
    const int64_t out_at = int64_t{m} * p.out_stride + n;
    const int8_t* residual = p.residual ? p.residual + int64_t{m} * p.residual_stride + n : nullptr;
    const bool vector = p.vector_io && n + kVec <= p.cout;

    if constexpr (kKind == kOutInt32) {
      int32_t* out = static_cast<int32_t*>(p.output) + out_at;
      if (vector) {
        *reinterpret_cast<int4*>(out) = *reinterpret_cast<const int4*>(y);
      } else {
        for (int i = 0; i < kVec && n + i < p.cout; ++i) out[i] = __float_as_int(y[i]);
      }
    } else if (vector) {
      float v[kVec];
#pragma unroll
      for (int i = 0; i < kVec; i += 4) {
        const float4 f = *reinterpret_cast<const float4*>(y + i);
        v[i] = f.x, v[i + 1] = f.y, v[i + 2] = f.z, v[i + 3] = f.w;
      }
      if (residual) {
        uint32_t words[kVec / 4];
        if constexpr (kVec == 16) {
          const uint4 r = *reinterpret_cast<const uint4*>(residual);
          words[0] = r.x, words[1] = r.y, words[2] = r.z, words[3] = r.w;
        } else {
          const uint2 r = *reinterpret_cast<const uint2*>(residual);
          words[0] = r.x, words[1] = r.y;
        }
#pragma unroll
        for (int i = 0; i < kVec; ++i)
          v[i] = add_residual(v[i], int8_at(words[i / 4], i % 4), p.residual_scale);
      }
      uint32_t packed[4];
      if constexpr (kKind == kOutInt8) {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          packed[i] = pack_low_bytes(requantize_bits(v[4 * i], p.inv_output_scale),
                                     requantize_bits(v[4 * i + 1], p.inv_output_scale),
                                     requantize_bits(v[4 * i + 2], p.inv_output_scale),
                                     requantize_bits(v[4 * i + 3], p.inv_output_scale));
        *reinterpret_cast<uint4*>(static_cast<int8_t*>(p.output) + out_at) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
          packed[i] = *reinterpret_cast<const uint32_t*>(&h);
        }
        *reinterpret_cast<uint4*>(static_cast<__half*>(p.output) + out_at) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
      }
    } else {
      for (int i = 0; i < kVec && n + i < p.cout; ++i) {
        float v = y[i];
        if (residual) v = add_residual(v, residual[i], p.residual_scale);
        if constexpr (kKind == kOutInt8)
          static_cast<int8_t*>(p.output)[out_at + i] =
              static_cast<int8_t>(requantize_bits(v, p.inv_output_scale) & 0xff);
        else
          static_cast<__half*>(p.output)[out_at + i] = __float2half_rn(v);
      }
    }
  }
}

// Floats of shared memory one warp needs: 16 staged rows of up to 32 columns + 8 pad, then the
// dequantization scales and the biases of the warp's kWarpN channels.
template <int kWarpN>
constexpr int epilogue_stage_floats() {
  return 16 * ((kWarpN < 32 ? kWarpN : 32) + 8) + 2 * kWarpN;
}

// The epilogue of one warp's kMI x kNI m16n8 fragments: rows m_warp + 16 mi + {g, g + 8},
// columns n_warp + 8 ni + 2 (lane % 4) + {0, 1}. `stage` is this warp's own shared memory.
// `channels_of` is the n_warp whose scales and biases are in `stage` (-1: none yet): they are
// read from global memory only when a warp's channel tile changes, which on YOLOv5's layers
// (one or a few channel tiles, the grid a multiple of their count) is once per kernel. Loading
// them per tile cost about a third of the epilogue's instructions.
template <int kMI, int kNI>
__device__ __forceinline__ void epilogue_warp(const ConvInt8Params& p, int32_t (&acc)[kMI][kNI][4],
                                              float* stage, int m_warp, int n_warp, int lane,
                                              int& channels_of) {
  constexpr int kWarpN = kNI * 8;
  constexpr int kCols = kWarpN < 32 ? kWarpN : 32;  // columns staged per pass
  constexpr int kStride = kCols + 8;                // +8 floats: conflict-free float2 stores
  float* channel_scale = stage + 16 * kStride;
  float* channel_bias = channel_scale + kWarpN;
  const int group = lane >> 2, pair = (lane & 3) * 2;
  const bool raw = p.output_kind == kOutInt32;
  if (channels_of != n_warp) {
    __syncwarp();  // the previous tile's reads are done
#pragma unroll
    for (int i = lane; i < kWarpN; i += 32) {
      const int n = n_warp + i;
      const bool ok = !raw && n < p.cout;
      channel_scale[i] = ok ? __fmul_rn(p.input_scale, p.weight_scales[n]) : 0.0f;
      channel_bias[i] = ok && p.bias ? p.bias[n] : 0.0f;
    }
    __syncwarp();
    channels_of = n_warp;
  }
#pragma unroll
  for (int nc = 0; nc < kWarpN; nc += kCols) {
    float2 scale[kCols / 8], bias[kCols / 8];
#pragma unroll
    for (int f = 0; f < kCols / 8; ++f) {
      scale[f] = *reinterpret_cast<const float2*>(channel_scale + nc + f * 8 + pair);
      bias[f] = *reinterpret_cast<const float2*>(channel_bias + nc + f * 8 + pair);
    }
#pragma unroll
    for (int mi = 0; mi < kMI; ++mi) {
#pragma unroll
      for (int f = 0; f < kCols / 8; ++f)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int32_t a0 = acc[mi][nc / 8 + f][2 * half], a1 = acc[mi][nc / 8 + f][2 * half + 1];
          float2 y;
          if (raw) {
            y = make_float2(__int_as_float(a0), __int_as_float(a1));
          } else {
            y.x = dequantize(a0, scale[f].x, bias[f].x);
            y.y = dequantize(a1, scale[f].y, bias[f].y);
            if (p.silu) y.x = silu(y.x), y.y = silu(y.y);
          }
          *reinterpret_cast<float2*>(stage + (group + 8 * half) * kStride + f * 8 + pair) = y;
        }
      __syncwarp();
      const int m_base = m_warp + mi * 16;
      if (p.output_kind == kOutInt8)
        store_slab<kCols, kStride, kOutInt8>(p, stage, m_base, n_warp + nc, lane);
      else if (p.output_kind == kOutFloat16)
        store_slab<kCols, kStride, kOutFloat16>(p, stage, m_base, n_warp + nc, lane);
      else
        store_slab<kCols, kStride, kOutInt32>(p, stage, m_base, n_warp + nc, lane);
      __syncwarp();
    }
  }
}

}  // namespace qyolo::cuda
