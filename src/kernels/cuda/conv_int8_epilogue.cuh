// The fused epilogue on the GPU (qyolo/conv_int8.h states the contract), shared by the
// mma.sync and the wgmma kernels: accumulators in registers in the m16n8 fragment layout ->
// dequantize and bias -> a 16-row slab per warp in shared memory -> SiLU, residual add, int8 or
// half conversion, 16-byte stores into the output's channel slice.
//
// Bit-identical to the CPU reference. Each element is first computed fast (SiLU with the
// approximate exp2 and reciprocal, requantization by multiplying with 1/scale) together with a
// bound on how far that can be from the reference's value; only where the result lies within
// that bound of a rounding boundary (an int8 half-step, or a half-precision midpoint) is the
// element recomputed as the reference does (IEEE division, exp in double rounded to float).
// That happens for about one element in 10^4, but with 512 elements a warp per slab, a few
// percent of the slabs have one: the fast test therefore marks the elements (a bit each) and
// fix_up recomputes only those. The engine's output equals the CPU backend's. The one
// difference left: exp in double, rounded, is the correctly rounded expf, which glibc's expf
// (0.502 ulp) misses in rare last-bit cases, and a one-ulp difference there changes an int8
// output far more rarely still.
#pragma once

#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "conv_int8_params.h"

namespace qyolo::cuda {

__device__ __forceinline__ float dequantize(int32_t acc, float channel_scale, float bias) {
  return __fmaf_rn(__int2float_rn(acc), channel_scale, bias);
}

// y * sigmoid(y) = y / (1 + 2^(-y * log2 e)), with the flush-to-zero approximate exp2 and
// reciprocal (one MUFU each, no denormal fix-ups). Large negative y: 2^.. = inf, rcp(inf) = 0.
// `relative` gets a bound on |result - reference| / |result| plus kExtra (the caller's own
// relative error, folded into the constant): ex2 (2 ulp) and the rounded argument (a relative
// error of |y| ulp in e = 2^(..)) reach 1 + e scaled by e / (1 + e) = 1 - r; the sum, rcp
// (1 ulp) and the product add about 2 ulp. Twice that, for margin.
// That bound is (1.2e-7 |y| + 5e-7) (1 - r) + 5e-7 with 1 - r = 1 / (1 + e^y) < 1, so
// relative <= 1.2e-7 |y| + 1.05e-6: one multiply-add with |y| as its operand (for y >= 0 it is
// looser than need be, which only sends a few more elements through fix_up).
template <int kExtraE9 = 0>  // kExtra in units of 1e-9
__device__ __forceinline__ float silu(float y, float& relative) {
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(y * -1.4426950408889634f));
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
  relative = fmaf(1.2e-7f, fabsf(y), 1.05e-6f + kExtraE9 * 1e-9f);
  return y * r;
}

// Relative error of t = v * (1/scale) against the reference's rounded v / scale: the rounded
// reciprocal, the product and the reference's own rounding, 1.8e-7, with margin.
constexpr int kReciprocalE9 = 250;

// The reference's value before the final rounding (conv_int8_epilogue_value), exactly. Only
// fix_up calls it.
__device__ __forceinline__ float exact_value(const ConvInt8Params& p, float y, int residual) {
  if (p.silu) y = __fdiv_rn(y, __fadd_rn(1.0f, static_cast<float>(exp(-static_cast<double>(y)))));
  if (p.conv_scale > 0.0f) {
    y = __fmul_rn(fminf(fmaxf(rintf(__fdiv_rn(y, p.conv_scale)), -128.0f), 127.0f), p.conv_scale);
    if (p.residual) y = __fadd_rn(y, __fmul_rn(static_cast<float>(residual), p.residual_scale));
  } else if (p.residual) {
    y = __fmaf_rn(static_cast<float>(residual), p.residual_scale, y);
  }
  return y;
}

constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: x + it rounds x to an integer, half to even

// t clamped to the int8 range and rounded half to even, in the low byte of a word and as a
// float, and a score of whether t might round differently from the reference's value: it
// might when t lies within `tolerance` of a half-step (t - rounded is then about +-1/2), which
// is when score = |t - rounded| + tolerance >= 1/2. Callers keep the largest score of a
// vector and compare once. The clamp comes first:
// the half-steps that matter lie inside the range, and past its ends both round to the end.
// Adding 1.5 * 2^23 rounds (an already rounded value passes through unchanged) and leaves the
// integer in the sum's low mantissa bits: no quarter-rate conversion instruction.
struct Rounded {
  uint32_t word;
  float value;
};
// The tolerance is |t| * relative (+ absolute).
__device__ __forceinline__ Rounded round_int8(float t, float relative, float& score) {
  const float clamped = fminf(fmaxf(t, -128.0f), 127.0f);
  const float sum = __fadd_rn(clamped, kRoundMagic);
  const float value = __fsub_rn(sum, kRoundMagic);
  score = fmaf(fabsf(t), relative, fabsf(__fsub_rn(clamped, value)));
  return {__float_as_uint(sum), value};
}
__device__ __forceinline__ Rounded round_int8(float t, float relative, float absolute, float& score) {
  const float clamped = fminf(fmaxf(t, -128.0f), 127.0f);
  const float sum = __fadd_rn(clamped, kRoundMagic);
  const float value = __fsub_rn(sum, kRoundMagic);
  score = fmaf(fabsf(t), relative, fabsf(__fsub_rn(clamped, value)) + absolute);
  return {__float_as_uint(sum), value};
}

constexpr float kNear = 0.5f;  // a score from here on: recompute exactly

// Which epilogue steps run, fixed at compile time for the common combinations so the
// unrolled store loop has no per-element branches: 0 off, 1 on, 2 as the parameters say.
template <int kSilu, int kConvScale, int kResidual>
struct Mode {
  __device__ __forceinline__ static bool silu(const ConvInt8Params& p) {
    if constexpr (kSilu == 2) return p.silu; else return kSilu == 1;
  }
  __device__ __forceinline__ static bool conv_scale(const ConvInt8Params& p) {
    if constexpr (kConvScale == 2) return p.conv_scale > 0.0f; else return kConvScale == 1;
  }
  __device__ __forceinline__ static bool residual(const ConvInt8Params& p) {
    if constexpr (kResidual == 2) return p.residual != nullptr; else return kResidual == 1;
  }
};
using AnyMode = Mode<2, 2, 2>;

// One int8 output element from the staged (dequantized, biased) value y, fast; `score` >= kNear
// when the fast value is too close to a rounding boundary to be trusted (fix_up then
// recomputes the element with exact_int8). The bounds are relative, so the tolerance is
// |t| * relative: one multiply-add per rounding.
template <class M>
__device__ __forceinline__ uint32_t int8_element(const ConvInt8Params& p, float y, int residual,
                                                 float& score) {
  // A bound on |t - the reference's t|: |t| * relative (+ absolute).
  float v = y, relative = kReciprocalE9 * 1e-9f;
  if (M::silu(p)) v = silu<kReciprocalE9>(y, relative);
  float score_conv = 0.0f, absolute = 0.0f;
  if (M::conv_scale(p)) {
    const float t = v * p.inv_conv_scale;
    v = __fmul_rn(round_int8(t, relative, score_conv).value, p.conv_scale);
    if (M::residual(p)) v = __fadd_rn(v, __fmul_rn(static_cast<float>(residual), p.residual_scale));
    relative = kReciprocalE9 * 1e-9f;  // v is now the reference's value exactly
  } else if (M::residual(p)) {
    // The residual can cancel v: the SiLU's error stays absolute, in output steps.
    absolute = fabsf(v) * relative * p.inv_output_scale;
    v = __fmaf_rn(static_cast<float>(residual), p.residual_scale, v);
    relative = kReciprocalE9 * 1e-9f;
  }
  const float t = v * p.inv_output_scale;
  const uint32_t word = !M::conv_scale(p) && M::residual(p)
                            ? round_int8(t, relative, absolute, score).word
                            : round_int8(t, relative, score).word;
  if (M::conv_scale(p)) score = fmaxf(score, score_conv);
#if defined(QYOLO_EPILOGUE_FAST)  // timing experiments: the fast values only
  score = 0.0f;
#endif
  return word;
}
template <class M>
__device__ __forceinline__ uint32_t int8_element(const ConvInt8Params& p, float y, int residual,
                                                 bool& near) {
  float score;
  const uint32_t word = int8_element<M>(p, y, residual, score);
  near = score >= kNear;
  return word;
}

__device__ __forceinline__ int8_t exact_int8(const ConvInt8Params& p, float y, int residual) {
  return static_cast<int8_t>(
      fminf(fmaxf(rintf(__fdiv_rn(exact_value(p, y, residual), p.output_scale)), -128.0f),
            127.0f));
}

// One float16 output element's float value (converted with round to nearest even by the
// caller): exact without SiLU; with it, `near` is set when the fast value's error bound
// straddles a half-precision rounding midpoint (exact_value then gives the value).
template <class M>
__device__ __forceinline__ float half_element(const ConvInt8Params& p, float y, int residual,
                                              bool& near) {
  near = false;
  if (!M::silu(p)) return M::residual(p) ? __fmaf_rn(static_cast<float>(residual), p.residual_scale, y) : y;
  float relative;
  float v = silu(y, relative);
  const float error = fabsf(v) * relative;
  if (M::residual(p)) v = __fmaf_rn(static_cast<float>(residual), p.residual_scale, v);
  near = __half_as_ushort(__float2half_rn(v - error)) !=
         __half_as_ushort(__float2half_rn(v + error));
#if defined(QYOLO_EPILOGUE_FAST)
  near = false;
#endif
  return v;
}

// Rewrites the elements of one item whose fast value is not to be trusted (bit i of `near`:
// channel i of the item) with the exact value: one copy of the exact code per kernel, outside
// the unrolled fast path, called for a few percent of the items. The caller's fast test picks
// the elements, so fix_up computes only those (each exact element costs a double-precision exp
// and an IEEE division; testing all of an item's elements again here cost more than that).
template <int kKind>
__device__ __noinline__ void fix_up(const ConvInt8Params& p, const float* y, const int8_t* residual,
                                    int64_t out_at, uint32_t near) {
#pragma unroll 1
  for (; near; near &= near - 1) {
    const int i = __ffs(near) - 1;
    const int r = residual ? residual[i] : 0;
    if constexpr (kKind == kOutInt8)
      static_cast<int8_t*>(p.output)[out_at + i] = exact_int8(p, y[i], r);
    else
      static_cast<__half*>(p.output)[out_at + i] = __float2half_rn(exact_value(p, y[i], r));
  }
}

// The low bytes of four words, first word in the low byte.
__device__ __forceinline__ uint32_t pack_low_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

__device__ __forceinline__ int8_t int8_at(uint32_t word, int byte) {
  return static_cast<int8_t>(word >> (8 * byte));
}

// Stores one staged 16-row slab (floats, or int32 bits for kOutInt32), kVec channels per item.
template <int kCols, int kStride, int kKind, class M = AnyMode>
__device__ __forceinline__ void store_slab_items(const ConvInt8Params& p, const float* stage, int m_base,
                                           int n_base, int lane, int m_end) {
  constexpr int kVec = kKind == kOutInt8 ? 16 : kKind == kOutFloat16 ? 8 : 4;
  constexpr int kPerRow = kCols / kVec;
  for (int item = lane; item < 16 * kPerRow; item += 32) {
    const int row = item / kPerRow;
    const int n = n_base + (item % kPerRow) * kVec;
    const int m = m_base + row;
    if (m >= m_end || n >= p.cout) continue;
    const float* y = stage + row * kStride + (item % kPerRow) * kVec;
    int64_t out_at = int64_t{m} * p.out_stride + n;
    if (kKind == kOutInt8 && p.out_block) {  // N x blocks x H x W x 32
      int hw;
      const int image = p.div_out_hw.divmod(m, hw);
      out_at = ((int64_t{image} * p.out_blocks + n / 32) * p.out_hw + hw) * 32 + n % 32;
    }
    const int8_t* residual = M::residual(p) ? p.residual + int64_t{m} * p.residual_stride + n : nullptr;
    const bool vector = p.vector_io && n + kVec <= p.cout;

    if constexpr (kKind == kOutInt32) {
      int32_t* out = static_cast<int32_t*>(p.output) + out_at;
      if (vector) {
        *reinterpret_cast<int4*>(out) = *reinterpret_cast<const int4*>(y);
      } else {
        for (int i = 0; i < kVec && n + i < p.cout; ++i) out[i] = __float_as_int(y[i]);
      }
    } else if (vector) {
      // Four channels at a time (one float4 of the slab, one word of residual bytes), so few
      // values are live at once.
      uint32_t words[kVec / 4] = {};
      if (M::residual(p)) {
        if constexpr (kVec == 16) {
          const uint4 r = *reinterpret_cast<const uint4*>(residual);
          words[0] = r.x, words[1] = r.y, words[2] = r.z, words[3] = r.w;
        } else {
          const uint2 r = *reinterpret_cast<const uint2*>(residual);
          words[0] = r.x, words[1] = r.y;
        }
      }
      uint32_t packed[4];
      uint32_t near = 0;  // bit i: element i to recompute exactly
#pragma unroll
      for (int g = 0; g < kVec / 4; ++g) {
        const float4 f = *reinterpret_cast<const float4*>(y + 4 * g);
        const uint32_t w = words[g];
        if constexpr (kKind == kOutInt8) {
          float s0, s1, s2, s3;
          const uint32_t b0 = int8_element<M>(p, f.x, int8_at(w, 0), s0);
          const uint32_t b1 = int8_element<M>(p, f.y, int8_at(w, 1), s1);
          const uint32_t b2 = int8_element<M>(p, f.z, int8_at(w, 2), s2);
          const uint32_t b3 = int8_element<M>(p, f.w, int8_at(w, 3), s3);
          packed[g] = pack_low_bytes(b0, b1, b2, b3);
          near |= (uint32_t(s0 >= kNear) | uint32_t(s1 >= kNear) << 1 | uint32_t(s2 >= kNear) << 2 |
                   uint32_t(s3 >= kNear) << 3) << (4 * g);
        } else {
          bool n0, n1, n2, n3;
          const float h0 = half_element<M>(p, f.x, int8_at(w, 0), n0);
          const float h1 = half_element<M>(p, f.y, int8_at(w, 1), n1);
          const float h2 = half_element<M>(p, f.z, int8_at(w, 2), n2);
          const float h3 = half_element<M>(p, f.w, int8_at(w, 3), n3);
          const __half2 lo = __floats2half2_rn(h0, h1), hi = __floats2half2_rn(h2, h3);
          packed[2 * g] = *reinterpret_cast<const uint32_t*>(&lo);
          packed[2 * g + 1] = *reinterpret_cast<const uint32_t*>(&hi);
          near |= (uint32_t(n0) | uint32_t(n1) << 1 | uint32_t(n2) << 2 | uint32_t(n3) << 3) << (4 * g);
        }
      }
      if constexpr (kKind == kOutInt8)
        *reinterpret_cast<uint4*>(static_cast<int8_t*>(p.output) + out_at) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
      else
        *reinterpret_cast<uint4*>(static_cast<__half*>(p.output) + out_at) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
      if (near) [[unlikely]] fix_up<kKind>(p, y, residual, out_at, near);
    } else {
      uint32_t near = 0;
      const int count = p.cout - n < kVec ? p.cout - n : kVec;
      for (int i = 0; i < count; ++i) {
        const int r = residual ? residual[i] : 0;
        bool n_i;
        if constexpr (kKind == kOutInt8)
          static_cast<int8_t*>(p.output)[out_at + i] =
              static_cast<int8_t>(int8_element<M>(p, y[i], r, n_i) & 0xff);
        else
          static_cast<__half*>(p.output)[out_at + i] = __float2half_rn(half_element<M>(p, y[i], r, n_i));
        near |= uint32_t(n_i) << i;
      }
      if (kKind == kOutInt8 && p.out_block)  // the block's padded channels are zero
        for (int i = count; i < kVec; ++i) static_cast<int8_t*>(p.output)[out_at + i] = 0;
      if (near) [[unlikely]] fix_up<kKind>(p, y, residual, out_at, near);
    }
  }
}

// A kernel's epilogue state: the variant it runs (its output kind and, for int8, the steps: bit
// 0 SiLU, 1 a Concat's or residual's rounding at the conv's scale, 2 a residual), read from
// the parameters once, and the channel tile whose scales are staged. epilogue_warp dispatches
// on the variant once per tile to code with the steps fixed at compile time for the
// combinations YOLOv5's layers use (Conv+SiLU, with a Concat's or a residual's rounding, plain
// Conv; the rest as the parameters say), staging included: no run-time test per element for
// the raw int32 output (a predicated move an element) and none per slab for the steps. yolov5s
// on an H200, batch 64 / 32 img/s and batch 1 ms: before 14,841 / 13,294 / 0.458; the output
// kind fixed but the steps chosen per 16-row slab 15,153 / 13,501 / 0.459 (same run as
// before's); steps per tile 15,800 / 14,255 / 0.453 (a second run, against 15,125 / 13,472 /
// 0.462 for the per-slab build). Tried and slower: the largest score of an item in place of
// the bit per element (one compare an item, the rare near item scored again out of line):
// batch 1 0.526 ms, batch 64 no faster.
struct EpilogueState {
  int variant;
  int channels_of = -1;  // the n_warp whose scales and biases are in the warp's stage
  __device__ __forceinline__ explicit EpilogueState(const ConvInt8Params& p)
      : variant(p.output_kind == kOutInt8
                    ? int(p.silu) | int(p.conv_scale > 0.0f) << 1 | int(p.residual != nullptr) << 2
                    : p.output_kind == kOutFloat16 ? (!p.silu && !p.residual ? 8 : 9)
                                                   : 10) {}
};

// Floats of shared memory one warp needs: 16 staged rows of up to 32 columns + 8 pad, then the
// dequantization scales and the biases of the warp's kWarpN channels.
template <int kWarpN>
constexpr int epilogue_stage_floats() {
  return 16 * ((kWarpN < 32 ? kWarpN : 32) + 8) + 2 * kWarpN;
}

// The epilogue of one warp's kMI x kNI m16n8 fragments: rows m_warp + 16 mi + {g, g + 8},
// columns n_warp + 8 ni + 2 (lane % 4) + {0, 1}. `stage` is this warp's own shared memory.
// Rows from m_end on are not stored (a tile that ends before the next rows' pixels).
// `channels_of` is the n_warp whose scales and biases are in `stage` (-1: none yet): they are
// read from global memory only when a warp's channel tile changes, which on YOLOv5's layers
// (one or a few channel tiles, the grid a multiple of their count) is once per kernel. Loading
// them per tile cost about a third of the epilogue's instructions.
template <int kKind, class M, int kMI, int kNI>
__device__ __forceinline__ void epilogue_warp_steps(const ConvInt8Params& p, int32_t (&acc)[kMI][kNI][4],
                                                    float* stage, int m_warp, int n_warp, int lane,
                                                    int& channels_of, int m_end) {
  constexpr int kWarpN = kNI * 8;
  constexpr int kCols = kWarpN < 32 ? kWarpN : 32;  // columns staged per pass
  constexpr int kStride = kCols + 8;                // +8 floats: conflict-free float2 stores
  float* channel_scale = stage + 16 * kStride;
  float* channel_bias = channel_scale + kWarpN;
  const int group = lane >> 2, pair = (lane & 3) * 2;
  constexpr bool raw = kKind == kOutInt32;
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
          if constexpr (raw) {
            y = make_float2(__int_as_float(a0), __int_as_float(a1));
          } else {
            y.x = dequantize(a0, scale[f].x, bias[f].x);  // SiLU and the rest: store_slab_items
            y.y = dequantize(a1, scale[f].y, bias[f].y);
          }
          *reinterpret_cast<float2*>(stage + (group + 8 * half) * kStride + f * 8 + pair) = y;
        }
      __syncwarp();
      const int m_base = m_warp + mi * 16;
      const int m_limit = m_end < p.pixels ? m_end : p.pixels;
      store_slab_items<kCols, kStride, kKind, M>(p, stage, m_base, n_warp + nc, lane, m_limit);
      __syncwarp();
    }
  }
}

template <int kMI, int kNI>
__device__ __forceinline__ void epilogue_warp(const ConvInt8Params& p, int32_t (&acc)[kMI][kNI][4],
                                              float* stage, int m_warp, int n_warp, int lane,
                                              EpilogueState& e, int m_end = INT_MAX) {
  int& c = e.channels_of;
  switch (e.variant) {
    case 0: return epilogue_warp_steps<kOutInt8, Mode<0, 0, 0>>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 1: return epilogue_warp_steps<kOutInt8, Mode<1, 0, 0>>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 3: return epilogue_warp_steps<kOutInt8, Mode<1, 1, 0>>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 7: return epilogue_warp_steps<kOutInt8, Mode<1, 1, 1>>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 2: case 4: case 5: case 6:
      return epilogue_warp_steps<kOutInt8, AnyMode>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 8: return epilogue_warp_steps<kOutFloat16, Mode<0, 0, 0>>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    case 9: return epilogue_warp_steps<kOutFloat16, AnyMode>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
    default: return epilogue_warp_steps<kOutInt32, AnyMode>(p, acc, stage, m_warp, n_warp, lane, c, m_end);
  }
}

}  // namespace qyolo::cuda
