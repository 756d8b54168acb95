// INT8 convolution: geometry, memory layouts, the packed weight format, and the CPU reference
// that defines the arithmetic every faster backend (src/kernels/cuda/) must reproduce.
//
// Header-only and free of CUDA on purpose: CPU-only unit tests, the GPU tests and the CUDA
// library all use the same reference without a link dependency between them.
//
// Arithmetic (DESIGN.md "Numerics"), for output pixel m and output channel c:
//   acc = sum over taps and input channels of int8 * int8, in int32 (exact)
//   y   = fma(float(acc), input_scale * weight_scales[c], bias[c])     one rounding, fused
//   y   = y / (1 + exp(-y))                       if silu       (SiLU = y * sigmoid(y))
//   y   = fma(float(residual), residual_scale, y) if residual   (after SiLU: YOLOv5's
//                                                 Bottleneck is x + cv2(cv1(x)), cv2 ends in SiLU)
// or, with conv_scale > 0 (int8 output only), the conv's own int8 output first, then the
// separate Add or Concat requantization the INT8 reference runs after it, fused:
//   y   = float(clamp(round_half_to_even(y / conv_scale), -128, 127)) * conv_scale
//   y   = y + float(residual) * residual_scale    if residual   (two products, one sum)
// then
//   out = clamp(round_half_to_even(y / output_scale), -128, 127)   int8 output
//       | half(y), round to nearest even                           float16 output
//       | acc                                                      int32 accumulator output
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "qyolo/status.h"

namespace qyolo {

// Geometry of one 2-D convolution with a square kernel (all YOLOv5 convolutions are square),
// channels as the model has them (unpadded), dilation 1, one group.
struct ConvInt8Shape {
  int batch = 1;
  int in_channels = 0;
  int in_h = 0;
  int in_w = 0;
  int out_channels = 0;
  int kernel = 1;
  int stride = 1;
  int pad = 0;

  int out_h() const { return (in_h + 2 * pad - kernel) / stride + 1; }
  int out_w() const { return (in_w + 2 * pad - kernel) / stride + 1; }
  int64_t out_pixels() const { return int64_t{batch} * out_h() * out_w(); }
  int64_t macs() const {
    return out_pixels() * out_channels * int64_t{kernel} * kernel * in_channels;
  }
};

// An NHWC tensor, or a channel slice of a wider one: pixel p, channel c is at
// element p * stride + offset + c. A slice output is how Concat costs nothing.
struct ChannelSlice {
  int stride = 0;  // elements from one pixel to the next
  int offset = 0;  // first channel of this tensor inside the row
};

enum class ConvOutput { kInt8, kFloat16, kInt32Accumulator };

// Everything after the integer accumulation. The pointers are host pointers for the reference
// and device pointers for the CUDA kernels.
struct ConvInt8Epilogue {
  float input_scale = 1.0f;
  const float* weight_scales = nullptr;  // [out_channels], one per output channel
  const float* bias = nullptr;           // [out_channels], or null for none
  bool silu = false;
  const int8_t* residual = nullptr;      // int8, output geometry; null for none
  ChannelSlice residual_layout;
  float residual_scale = 1.0f;
  float output_scale = 1.0f;  // int8 output only
  ConvOutput output = ConvOutput::kInt8;
  // > 0: round to int8 at this scale before the residual add / the requantization to
  // output_scale (see the arithmetic above); 0: one rounding, at output_scale.
  float conv_scale = 0.0f;
};

// How the weights are packed for the kernels: one row of packed_k() int8 per output channel.
//   kOhwi16: [out][kh][kw][round_up(in_channels, 16)], zero in the padded channels. Any
//            input whose pixel stride and channel offset are multiples of 16.
//   kHwc4S2d: the stem's int8:hwc4 input (pixel stride 4, <= 4 channels) under a stride-2
//            convolution with even kernel and padding, seen as space-to-depth: 2x2 input
//            pixels x 4 channels are one 16-channel pixel, and the 6x6/2 stem becomes a 3x3/1
//            convolution with K = 9 * 16 = 144 (instead of 36 * 16 with channels padded to 16).
//            Layout [out][kh/2][kw/2][dy][dx][4] with r = 2 * (kh index) + dy, s likewise.
enum class ConvWeightFormat { kOhwi16, kHwc4S2d };

inline int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

inline ConvWeightFormat conv_int8_weight_format(const ConvInt8Shape& shape,
                                                const ChannelSlice& input_layout) {
  if (input_layout.stride == 4 && input_layout.offset == 0 && shape.in_channels <= 4 &&
      shape.stride == 2 && shape.kernel % 2 == 0 && shape.pad % 2 == 0)
    return ConvWeightFormat::kHwc4S2d;
  return ConvWeightFormat::kOhwi16;
}

// Bytes in one packed weight row (the GEMM's K).
inline int conv_int8_packed_k(const ConvInt8Shape& shape, ConvWeightFormat format) {
  if (format == ConvWeightFormat::kHwc4S2d) return (shape.kernel / 2) * (shape.kernel / 2) * 16;
  return shape.kernel * shape.kernel * round_up(shape.in_channels, 16);
}

// Checks geometry and layouts; the message names what is wrong.
inline Status check_conv_int8(const ConvInt8Shape& s, const ChannelSlice& input_layout,
                              const ChannelSlice& output_layout, const ConvInt8Epilogue& e) {
  if (s.batch < 1 || s.in_channels < 1 || s.in_h < 1 || s.in_w < 1 || s.out_channels < 1 ||
      s.kernel < 1 || s.stride < 1 || s.pad < 0)
    return invalid_argument("conv_int8: non-positive size (batch ", s.batch, ", in ",
                            s.in_channels, "x", s.in_h, "x", s.in_w, ", out ", s.out_channels,
                            ", kernel ", s.kernel, ", stride ", s.stride, ", pad ", s.pad, ")");
  if (s.in_h + 2 * s.pad < s.kernel || s.in_w + 2 * s.pad < s.kernel)
    return invalid_argument("conv_int8: kernel ", s.kernel, " larger than the padded input ",
                            s.in_h, "x", s.in_w, " (pad ", s.pad, ")");
  if (input_layout.offset < 0 || input_layout.offset + s.in_channels > input_layout.stride)
    return invalid_argument("conv_int8: input channels [", input_layout.offset, ", ",
                            input_layout.offset + s.in_channels,
                            ") do not fit the pixel stride ", input_layout.stride);
  if (output_layout.offset < 0 || output_layout.offset + s.out_channels > output_layout.stride)
    return invalid_argument("conv_int8: output channels [", output_layout.offset, ", ",
                            output_layout.offset + s.out_channels,
                            ") do not fit the pixel stride ", output_layout.stride);
  if (e.residual && (e.residual_layout.offset < 0 ||
                     e.residual_layout.offset + s.out_channels > e.residual_layout.stride))
    return invalid_argument("conv_int8: residual channels [", e.residual_layout.offset, ", ",
                            e.residual_layout.offset + s.out_channels,
                            ") do not fit the pixel stride ", e.residual_layout.stride);
  if (e.output != ConvOutput::kInt32Accumulator && !e.weight_scales)
    return invalid_argument("conv_int8: weight_scales missing");
  if (e.output == ConvOutput::kInt8 && !(e.output_scale > 0.0f))
    return invalid_argument("conv_int8: output_scale ", e.output_scale, " is not positive");
  if (!(e.conv_scale >= 0.0f) || !std::isfinite(e.conv_scale))
    return invalid_argument("conv_int8: conv_scale ", e.conv_scale, " is not a finite scale");
  if (e.conv_scale > 0.0f && e.output != ConvOutput::kInt8)
    return invalid_argument("conv_int8: conv_scale needs an int8 output");
  return Status::ok();
}

// Packs OHWI weights [out][k][k][in_channels] (unpadded) into the kernels' format.
inline std::vector<int8_t> pack_conv_int8_weights(const ConvInt8Shape& shape,
                                                  ConvWeightFormat format,
                                                  const int8_t* weights_ohwi) {
  const int k = shape.kernel, cin = shape.in_channels, row = conv_int8_packed_k(shape, format);
  std::vector<int8_t> packed(size_t(shape.out_channels) * row, 0);
  for (int o = 0; o < shape.out_channels; ++o)
    for (int r = 0; r < k; ++r)
      for (int s = 0; s < k; ++s)
        for (int c = 0; c < cin; ++c) {
          const size_t at = format == ConvWeightFormat::kHwc4S2d
                                ? (size_t(r / 2) * (k / 2) + s / 2) * 16 + (r % 2) * 8 + (s % 2) * 4 + c
                                : (size_t(r) * k + s) * round_up(cin, 16) + c;
          packed[size_t(o) * row + at] = weights_ohwi[((size_t(o) * k + r) * k + s) * cin + c];
        }
  return packed;
}

// IEEE float to half bits, round to nearest even (what __float2half_rn does).
// The float value of float16 bits (exact: every half is a float).
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 113;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half_rne(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past 65504: infinity
  if (abs < 0x38800000u) {  // half subnormal or zero: value / 2^-24, rounded to even
    float scaled = std::fabs(value) * 16777216.0f;  // exact: a power of two
    return uint16_t(sign | uint32_t(std::nearbyint(scaled)));
  }
  const uint32_t mantissa = abs & 0x7fffffu;
  uint32_t half = ((abs >> 23) - 112) << 10 | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // carries into the exponent
  return uint16_t(sign | half);
}

// The int32 accumulators of one convolution, [out_pixels][out_channels]; weights OHWI unpadded.
inline std::vector<int32_t> conv_int8_accumulate_reference(const ConvInt8Shape& s,
                                                           const int8_t* input,
                                                           const ChannelSlice& input_layout,
                                                           const int8_t* weights_ohwi) {
  const int oh_n = s.out_h(), ow_n = s.out_w(), k = s.kernel, cin = s.in_channels;
  const int cout = s.out_channels;
  std::vector<int32_t> acc(size_t(s.out_pixels()) * cout, 0);
  const int64_t rows = int64_t{s.batch} * oh_n;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic)
#endif
  for (int64_t row = 0; row < rows; ++row) {
    const int n = int(row / oh_n), oh = int(row % oh_n);
    for (int ow = 0; ow < ow_n; ++ow) {
      int32_t* out = acc.data() + (size_t(row) * ow_n + ow) * cout;
      for (int r = 0; r < k; ++r) {
        const int ih = oh * s.stride - s.pad + r;
        if (ih < 0 || ih >= s.in_h) continue;
        for (int c_s = 0; c_s < k; ++c_s) {
          const int iw = ow * s.stride - s.pad + c_s;
          if (iw < 0 || iw >= s.in_w) continue;
          const int8_t* x = input + ((size_t(n) * s.in_h + ih) * s.in_w + iw) * input_layout.stride +
                            input_layout.offset;
          for (int o = 0; o < cout; ++o) {
            const int8_t* w = weights_ohwi + ((size_t(o) * k + r) * k + c_s) * cin;
            int32_t sum = 0;
            for (int c = 0; c < cin; ++c) sum += int32_t{x[c]} * int32_t{w[c]};
            out[o] += sum;
          }
        }
      }
    }
  }
  return acc;
}

inline int8_t quantize_rne(float y, float scale) {
  const float q = std::nearbyint(y / scale);  // the default rounding mode: half to even
  return int8_t(std::clamp(q, -128.0f, 127.0f));
}

// The epilogue for one accumulator, up to the value that is stored (before int8 rounding).
inline float conv_int8_epilogue_value(int32_t acc, int channel, const ConvInt8Epilogue& e,
                                      int8_t residual) {
  const float channel_scale = e.input_scale * e.weight_scales[channel];
  float y = std::fma(float(acc), channel_scale, e.bias ? e.bias[channel] : 0.0f);
  if (e.silu) y = y / (1.0f + std::exp(-y));
  if (e.conv_scale > 0.0f) {
    y = float(quantize_rne(y, e.conv_scale)) * e.conv_scale;
    if (e.residual) y = y + float(residual) * e.residual_scale;
    return y;
  }
  if (e.residual) y = std::fma(float(residual), e.residual_scale, y);
  return y;
}

// Applies the epilogue to accumulators (from conv_int8_accumulate_reference) and writes the
// output into its channel slice; elements outside the slice are left alone.
inline void conv_int8_epilogue_reference(const ConvInt8Shape& s, const int32_t* acc,
                                         const ConvInt8Epilogue& e, void* output,
                                         const ChannelSlice& output_layout) {
  const int64_t pixels = s.out_pixels();
  const int cout = s.out_channels;
  for (int64_t m = 0; m < pixels; ++m)
    for (int c = 0; c < cout; ++c) {
      const int32_t a = acc[m * cout + c];
      const size_t at = size_t(m) * output_layout.stride + output_layout.offset + c;
      if (e.output == ConvOutput::kInt32Accumulator) {
        static_cast<int32_t*>(output)[at] = a;
        continue;
      }
      const int8_t r = e.residual ? e.residual[size_t(m) * e.residual_layout.stride +
                                               e.residual_layout.offset + c]
                                  : int8_t{0};
      const float y = conv_int8_epilogue_value(a, c, e, r);
      if (e.output == ConvOutput::kInt8)
        static_cast<int8_t*>(output)[at] = quantize_rne(y, e.output_scale);
      else
        static_cast<uint16_t*>(output)[at] = float_to_half_rne(y);
    }
}

// The whole convolution: accumulate, then the epilogue.
inline Status conv_int8_reference(const ConvInt8Shape& shape, const int8_t* input,
                                  const ChannelSlice& input_layout, const int8_t* weights_ohwi,
                                  const ConvInt8Epilogue& epilogue, void* output,
                                  const ChannelSlice& output_layout) {
  QYOLO_RETURN_IF_ERROR(check_conv_int8(shape, input_layout, output_layout, epilogue));
  const std::vector<int32_t> acc =
      conv_int8_accumulate_reference(shape, input, input_layout, weights_ohwi);
  conv_int8_epilogue_reference(shape, acc.data(), epilogue, output, output_layout);
  return Status::ok();
}

}  // namespace qyolo
