// Convolutions of the CPU engine backend. int8: each output pixel's receptive field is gathered
// into one row in the packed weights' layout, then dotted with every packed weight row (exact
// int32), then conv_int8.h's epilogue. fp16: float32 accumulation in the reference Conv's order
// (bias, then input channel, kernel row, kernel column), vectorised over output channels.
#include <cmath>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "qyolo/conv_int8.h"
#include "runtime/backends/cpu/engine_kernels.h"

namespace qyolo::cpu_engine {
namespace {

// Exact int32 dot product of two packed rows; n is a multiple of 16 (every packed format's K).
inline int32_t dot_int8(const int8_t* a, const int8_t* b, int n) {
#if defined(__SSE2__)
  // Sign-extend to int16 and multiply-add pairs into int32: exact, as 2 * 128 * 128 < 2^31.
  __m128i acc = _mm_setzero_si128();
  for (int i = 0; i < n; i += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    const __m128i a_lo = _mm_srai_epi16(_mm_unpacklo_epi8(va, va), 8);
    const __m128i a_hi = _mm_srai_epi16(_mm_unpackhi_epi8(va, va), 8);
    const __m128i b_lo = _mm_srai_epi16(_mm_unpacklo_epi8(vb, vb), 8);
    const __m128i b_hi = _mm_srai_epi16(_mm_unpackhi_epi8(vb, vb), 8);
    acc = _mm_add_epi32(acc, _mm_madd_epi16(a_lo, b_lo));
    acc = _mm_add_epi32(acc, _mm_madd_epi16(a_hi, b_hi));
  }
  acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(acc);
#else
  int32_t sum = 0;
  for (int i = 0; i < n; ++i) sum += int32_t(a[i]) * int32_t(b[i]);
  return sum;
#endif
}

}  // namespace

Status run_conv_int8(const Context& ctx, int index) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  const ConvInt8Shape& s = l.shape;
  const EngineTensor& in = e.tensors[l.inputs[0]];
  const EngineTensor& out = e.tensors[l.output];
  const int k = s.kernel, cin = s.in_channels, cout = s.out_channels;
  const int oh_n = s.out_h(), ow_n = s.out_w();
  const int packed_k = conv_int8_packed_k(s, l.weight_format);
  if (packed_k % 16 != 0)
    return internal_error("layer '", l.name, "': packed K ", packed_k, " is not a multiple of 16");
  if (l.weights.bytes != uint64_t(packed_k) * cout)
    return internal_error("layer '", l.name, "': ", l.weights.bytes, " weight bytes, expected ",
                          packed_k * cout);
  // Where tap (r, c) starts inside a packed row.
  std::vector<int> tap(size_t(k) * k);
  for (int r = 0; r < k; ++r)
    for (int c = 0; c < k; ++c)
      tap[r * k + c] = l.weight_format == ConvWeightFormat::kHwc4S2d
                           ? ((r / 2) * (k / 2) + c / 2) * 16 + (r % 2) * 8 + (c % 2) * 4
                           : (r * k + c) * round_up(cin, 16);
  const int8_t* weights = e.weight_data<int8_t>(l.weights);
  ConvInt8Epilogue ep;
  ep.input_scale = in.scale;
  ep.weight_scales = e.weight_data<float>(l.weight_scales);
  ep.bias = e.weight_data<float>(l.bias);
  ep.silu = l.activation == Activation::kSilu;
  const int8_t* table = e.weight_data<int8_t>(l.table);
  const EngineTensor* res = l.residual >= 0 ? &e.tensors[l.residual] : nullptr;
  const float out_scale = layer_round_scale(e, l);  // a fused Concat copy: apply_fused_copy
  // Rounded at the conv's own scale first, then the reference's separate Add or its
  // requantizing copy into a Concat of another scale: conv_int8.h's conv_scale arithmetic.
  const bool rounded_first = !table && l.conv_scale > 0.0f;
  if (rounded_first) {
    ep.conv_scale = l.conv_scale;
    if (res) ep.residual_scale = res->scale;
  }

  for (int n = 0; n < ctx.batch; ++n) {
    const int8_t* x = ctx.image<int8_t>(l.inputs[0], n);
    int8_t* y = ctx.image<int8_t>(l.output, n);
    const int8_t* r = res ? ctx.image<int8_t>(l.residual, n) : nullptr;
    if (rounded_first) ep.residual = r;
#pragma omp parallel
    {
      std::vector<int8_t> row(packed_k);
#pragma omp for schedule(dynamic)
      for (int oh = 0; oh < oh_n; ++oh) {
        for (int ow = 0; ow < ow_n; ++ow) {
          std::fill(row.begin(), row.end(), int8_t{0});
          for (int kr = 0; kr < k; ++kr) {
            const int ih = oh * s.stride - s.pad + kr;
            if (ih < 0 || ih >= s.in_h) continue;
            for (int kc = 0; kc < k; ++kc) {
              const int iw = ow * s.stride - s.pad + kc;
              if (iw < 0 || iw >= s.in_w) continue;
              std::memcpy(row.data() + tap[kr * k + kc],
                          x + (int64_t(ih) * s.in_w + iw) * in.layout.stride, size_t(cin));
            }
          }
          const int64_t pixel = int64_t(oh) * ow_n + ow;
          int8_t* dst = y + pixel * out.layout.stride;
          const int8_t* rp = r ? r + pixel * res->layout.stride : nullptr;
          for (int o = 0; o < cout; ++o) {
            const int32_t acc = dot_int8(row.data(), weights + size_t(o) * packed_k, packed_k);
            const float v = conv_int8_epilogue_value(acc, o, ep, rp ? rp[o] : 0);
            if (table) {
              dst[o] = table[quantize_rne(v, l.conv_scale) + 128];
            } else if (rp && !rounded_first) {
              // The reference's separate Add of the unrounded value (docs/engine_format.md).
              dst[o] = quantize_rne(v + float(rp[o]) * res->scale, out_scale);
            } else {
              dst[o] = quantize_rne(v, out_scale);
            }
          }
        }
      }
    }
  }
  return Status::ok();
}

Status run_conv_fp16(const Context& ctx, int index) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  const ConvInt8Shape& s = l.shape;
  const EngineTensor& in = e.tensors[l.inputs[0]];
  const EngineTensor& out = e.tensors[l.output];
  const int k = s.kernel, cin = s.in_channels, cout = s.out_channels;
  const int oh_n = s.out_h(), ow_n = s.out_w();
  const std::vector<float>& w = (*ctx.fp16_weights)[index];
  const std::vector<float>& bias = (*ctx.fp16_bias)[index];
  if (w.size() != size_t(cin) * k * k * cout || bias.size() != size_t(cout))
    return internal_error("layer '", l.name, "': fp16 weights of the wrong size");
  if (l.residual >= 0) return unsupported("layer '", l.name, "': fp16 residual");
  for (int n = 0; n < ctx.batch; ++n) {
    const uint16_t* x = ctx.image<uint16_t>(l.inputs[0], n);
    uint16_t* y = ctx.image<uint16_t>(l.output, n);
#pragma omp parallel
    {
      std::vector<float> acc(cout), xin(cin);
#pragma omp for schedule(dynamic)
      for (int oh = 0; oh < oh_n; ++oh) {
        for (int ow = 0; ow < ow_n; ++ow) {
          std::copy(bias.begin(), bias.end(), acc.begin());
          for (int c = 0; c < cin; ++c) {
            for (int kr = 0; kr < k; ++kr) {
              const int ih = oh * s.stride - s.pad + kr;
              if (ih < 0 || ih >= s.in_h) continue;
              for (int kc = 0; kc < k; ++kc) {
                const int iw = ow * s.stride - s.pad + kc;
                if (iw < 0 || iw >= s.in_w) continue;
                const float xv =
                    half_to_float_bits(x[(int64_t(ih) * s.in_w + iw) * in.layout.stride + c]);
                const float* wr = w.data() + ((size_t(c) * k + kr) * k + kc) * cout;
                float* a = acc.data();
                for (int o = 0; o < cout; ++o) a[o] += wr[o] * xv;
              }
            }
          }
          uint16_t* dst = y + (int64_t(oh) * ow_n + ow) * out.layout.stride;
          for (int o = 0; o < cout; ++o) {
            // The reference runs Conv, Sigmoid and Mul as three fp16 steps, each rounded.
            const float v = round_half(acc[o]);
            float result = v;
            if (l.activation == Activation::kSilu) {
              const float sig = round_half(1.0f / (1.0f + std::exp(-v)));
              result = v * sig;
            } else if (l.activation == Activation::kSigmoid) {
              result = 1.0f / (1.0f + std::exp(-v));
            }
            dst[o] = float_to_half_rne(result);
          }
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace qyolo::cpu_engine
