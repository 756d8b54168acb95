// The INT8 convolution reference (qyolo/conv_int8.h), the oracle of the CUDA kernels: hand
// computed cases, an independent float64 convolution, the epilogue's order and rounding, the
// packed weight formats and the argument checks. CPU only.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/fast_divmod.h"
#include "qyolo/conv_int8.h"
#include "qyolo/tensor.h"

namespace qyolo {
namespace {

std::vector<int8_t> random_int8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-128, 127);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = int8_t(d(rng));
  return v;
}

// Direct convolution in double with NCHW-style indexing: a different loop order and type.
std::vector<double> conv_double(const ConvInt8Shape& s, const std::vector<int8_t>& x,
                                const ChannelSlice& in, const std::vector<int8_t>& w) {
  std::vector<double> y(size_t(s.out_pixels()) * s.out_channels, 0.0);
  for (int n = 0; n < s.batch; ++n)
    for (int o = 0; o < s.out_channels; ++o)
      for (int oh = 0; oh < s.out_h(); ++oh)
        for (int ow = 0; ow < s.out_w(); ++ow) {
          double sum = 0;
          for (int c = 0; c < s.in_channels; ++c)
            for (int r = 0; r < s.kernel; ++r)
              for (int q = 0; q < s.kernel; ++q) {
                const int ih = oh * s.stride - s.pad + r, iw = ow * s.stride - s.pad + q;
                if (ih < 0 || iw < 0 || ih >= s.in_h || iw >= s.in_w) continue;
                sum += double(x[((size_t(n) * s.in_h + ih) * s.in_w + iw) * in.stride + in.offset + c]) *
                       double(w[((size_t(o) * s.kernel + r) * s.kernel + q) * s.in_channels + c]);
              }
          y[((size_t(n) * s.out_h() + oh) * s.out_w() + ow) * s.out_channels + o] = sum;
        }
  return y;
}

TEST(ConvInt8Reference, AccumulatorsMatchFloat64Convolution) {
  const std::vector<ConvInt8Shape> shapes = {
      {2, 3, 13, 11, 16, 6, 2, 2}, {1, 32, 9, 7, 24, 3, 1, 1}, {3, 20, 8, 8, 5, 3, 2, 1},
      {1, 64, 5, 5, 33, 1, 1, 0},
  };
  uint32_t seed = 1;
  for (const auto& s : shapes) {
    const ChannelSlice in{s.in_channels + 12, 8};  // a channel slice of a wider tensor
    const auto x = random_int8(size_t(s.batch) * s.in_h * s.in_w * in.stride, seed++);
    const auto w = random_int8(size_t(s.out_channels) * s.kernel * s.kernel * s.in_channels, seed++);
    const auto acc = conv_int8_accumulate_reference(s, x.data(), in, w.data());
    const auto ref = conv_double(s, x, in, w);
    ASSERT_EQ(acc.size(), ref.size());
    for (size_t i = 0; i < acc.size(); ++i) ASSERT_EQ(double(acc[i]), ref[i]) << "element " << i;
  }
}

TEST(ConvInt8Reference, HandComputedPaddingAndStride) {
  // 3x3 input of ones, 3x3 kernel of ones, pad 1: each output counts the taps inside.
  const ConvInt8Shape s{1, 1, 3, 3, 1, 3, 1, 1};
  const std::vector<int8_t> x(9, 1), w(9, 1);
  const auto acc = conv_int8_accumulate_reference(s, x.data(), {1, 0}, w.data());
  EXPECT_EQ(acc, (std::vector<int32_t>{4, 6, 4, 6, 9, 6, 4, 6, 4}));
  // Stride 2 keeps the corners.
  const ConvInt8Shape s2{1, 1, 3, 3, 1, 3, 2, 1};
  EXPECT_EQ(conv_int8_accumulate_reference(s2, x.data(), {1, 0}, w.data()),
            (std::vector<int32_t>{4, 4, 4, 4}));
  // Extremes: -128 * -128 summed 9 times stays exact in int32.
  const std::vector<int8_t> lo(9, -128);
  EXPECT_EQ(conv_int8_accumulate_reference({1, 1, 3, 3, 1, 3, 1, 0}, lo.data(), {1, 0}, lo.data()),
            (std::vector<int32_t>{9 * 16384}));
}

TEST(ConvInt8Reference, EpilogueOrderAndRounding) {
  const float weight_scale = 1.0f, bias = 0.0f;
  ConvInt8Epilogue e;
  e.input_scale = 0.5f;
  e.weight_scales = &weight_scale;
  e.bias = &bias;
  e.output_scale = 1.0f;
  // Half-way cases round to even: 5 * 0.5 = 2.5 -> 2, 7 * 0.5 = 3.5 -> 4, -2.5 -> -2.
  EXPECT_EQ(quantize_rne(conv_int8_epilogue_value(5, 0, e, 0), e.output_scale), 2);
  EXPECT_EQ(quantize_rne(conv_int8_epilogue_value(7, 0, e, 0), e.output_scale), 4);
  EXPECT_EQ(quantize_rne(conv_int8_epilogue_value(-5, 0, e, 0), e.output_scale), -2);
  // Saturation.
  EXPECT_EQ(quantize_rne(1000.0f, 1.0f), 127);
  EXPECT_EQ(quantize_rne(-1000.0f, 1.0f), -128);
  // SiLU, then the residual: silu(-4) + 10 * 0.5, not silu(-4 + 5).
  e.silu = true;
  e.residual = reinterpret_cast<const int8_t*>(1);  // only tested for null by the value function
  e.residual_scale = 0.5f;
  const float y = conv_int8_epilogue_value(-8, 0, e, 10);
  EXPECT_FLOAT_EQ(y, -4.0f / (1.0f + std::exp(4.0f)) + 5.0f);
  EXPECT_NE(y, 1.0f / (1.0f + std::exp(-1.0f)));
  // Dequantization is one fused multiply-add: acc * (s_in * s_w) + bias rounded once.
  const float b = 0.1f, ws = 0.3f;
  ConvInt8Epilogue f;
  f.input_scale = 0.7f;
  f.weight_scales = &ws;
  f.bias = &b;
  EXPECT_EQ(conv_int8_epilogue_value(12345, 0, f, 0), std::fma(12345.0f, 0.7f * 0.3f, 0.1f));
}

// conv_scale: the conv's own int8 output first, then the reference's separate Add (or Concat
// requantization) of that value, as the INT8 executor runs them as two layers.
TEST(ConvInt8Reference, ConvScaleRoundsBeforeTheResidual) {
  const float weight_scale = 1.0f, bias = 0.0f;
  ConvInt8Epilogue e;
  e.input_scale = 0.01f;
  e.weight_scales = &weight_scale;
  e.bias = &bias;
  e.conv_scale = 0.1f;
  // 1.26 rounds to 13 steps of 0.1 first: 1.3 (in float, 13 * 0.1f), not 1.26.
  EXPECT_EQ(conv_int8_epilogue_value(126, 0, e, 0), 13.0f * 0.1f);
  // Saturated at the conv's scale: 20.0 -> 127 * 0.1.
  EXPECT_EQ(conv_int8_epilogue_value(2000, 0, e, 0), 127.0f * 0.1f);
  // With a residual: the two dequantized int8 values summed, one rounding each.
  e.residual = reinterpret_cast<const int8_t*>(1);  // only tested for null by the value function
  e.residual_scale = 0.03f;
  EXPECT_EQ(conv_int8_epilogue_value(126, 0, e, -7), 13.0f * 0.1f + -7.0f * 0.03f);
  EXPECT_NE(conv_int8_epilogue_value(126, 0, e, -7), std::fma(-7.0f, 0.03f, 1.26f));
  // conv_scale needs an int8 output, and a finite non-negative value.
  const ConvInt8Shape s{1, 16, 4, 4, 16, 1, 1, 0};
  e.residual = nullptr;
  EXPECT_TRUE(check_conv_int8(s, {16, 0}, {16, 0}, e).is_ok());
  e.output = ConvOutput::kFloat16;
  EXPECT_NE(check_conv_int8(s, {16, 0}, {16, 0}, e).message().find("conv_scale"), std::string::npos);
  e.output = ConvOutput::kInt8;
  e.conv_scale = -1.0f;
  EXPECT_NE(check_conv_int8(s, {16, 0}, {16, 0}, e).message().find("conv_scale"), std::string::npos);
}

TEST(ConvInt8Reference, HalfConversionMatchesTensorHelper) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-70000.0f, 70000.0f);
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 6e-5f,
                               5.96e-8f, 2.98e-8f, 2.99e-8f, INFINITY, -INFINITY};
  for (int i = 0; i < 20000; ++i) values.push_back(d(rng) * std::pow(2.0f, float(i % 40 - 30)));
  for (float v : values) EXPECT_EQ(float_to_half_rne(v), float_to_half(v)) << v;
}

TEST(ConvInt8Reference, OutputSliceAndOutputKinds) {
  const ConvInt8Shape s{1, 16, 4, 4, 3, 1, 1, 0};
  const auto x = random_int8(16 * 16, 3), w = random_int8(3 * 16, 4);
  const std::vector<float> scales = {0.01f, 0.02f, 0.03f}, bias = {0.5f, -0.5f, 0.0f};
  ConvInt8Epilogue e;
  e.input_scale = 0.1f;
  e.weight_scales = scales.data();
  e.bias = bias.data();
  e.output_scale = 0.05f;
  const ChannelSlice out{8, 2};
  std::vector<int8_t> y(16 * 8, 99);
  ASSERT_TRUE(conv_int8_reference(s, x.data(), {16, 0}, w.data(), e, y.data(), out).is_ok());
  const auto acc = conv_int8_accumulate_reference(s, x.data(), {16, 0}, w.data());
  for (int m = 0; m < 16; ++m)
    for (int c = 0; c < 8; ++c) {
      const int8_t got = y[m * 8 + c];
      if (c < 2 || c >= 5) {
        EXPECT_EQ(got, 99) << "outside the slice";
      } else {
        const int ch = c - 2;
        const float v = std::fma(float(acc[m * 3 + ch]), 0.1f * scales[ch], bias[ch]);
        EXPECT_EQ(got, int8_t(std::clamp(std::nearbyint(v / 0.05f), -128.0f, 127.0f)));
      }
    }
  e.output = ConvOutput::kInt32Accumulator;
  std::vector<int32_t> raw(16 * 3);
  ASSERT_TRUE(conv_int8_reference(s, x.data(), {16, 0}, w.data(), e, raw.data(), {3, 0}).is_ok());
  EXPECT_EQ(raw, acc);
  e.output = ConvOutput::kFloat16;
  std::vector<uint16_t> half(16 * 3);
  ASSERT_TRUE(conv_int8_reference(s, x.data(), {16, 0}, w.data(), e, half.data(), {3, 0}).is_ok());
  EXPECT_EQ(half[4], float_to_half(std::fma(float(acc[4]), 0.1f * scales[1], bias[1])));
}

TEST(ConvInt8Reference, PackedWeightFormats) {
  const ConvInt8Shape stem{1, 3, 640, 640, 32, 6, 2, 2};
  EXPECT_EQ(conv_int8_weight_format(stem, {4, 0}), ConvWeightFormat::kHwc4S2d);
  EXPECT_EQ(conv_int8_weight_format(stem, {16, 0}), ConvWeightFormat::kOhwi16);
  EXPECT_EQ(conv_int8_weight_format({1, 3, 64, 64, 8, 3, 1, 1}, {4, 0}), ConvWeightFormat::kOhwi16);
  EXPECT_EQ(conv_int8_packed_k(stem, ConvWeightFormat::kHwc4S2d), 9 * 16);
  EXPECT_EQ(conv_int8_packed_k(stem, ConvWeightFormat::kOhwi16), 36 * 16);
  const ConvInt8Shape c3{1, 40, 8, 8, 2, 3, 1, 1};
  EXPECT_EQ(conv_int8_packed_k(c3, ConvWeightFormat::kOhwi16), 9 * 48);

  const auto w = random_int8(32 * 6 * 6 * 3, 9);
  const auto s2d = pack_conv_int8_weights(stem, ConvWeightFormat::kHwc4S2d, w.data());
  const auto ohwi = pack_conv_int8_weights(stem, ConvWeightFormat::kOhwi16, w.data());
  // Space-to-depth: tap (R, S) of the 3x3 view holds kernel rows 2R, 2R+1 and columns 2S, 2S+1.
  for (int o = 0; o < 32; ++o)
    for (int r = 0; r < 6; ++r)
      for (int s = 0; s < 6; ++s)
        for (int c = 0; c < 4; ++c) {
          const int8_t want = c < 3 ? w[((o * 6 + r) * 6 + s) * 3 + c] : 0;
          EXPECT_EQ(s2d[o * 144 + ((r / 2) * 3 + s / 2) * 16 + (r % 2) * 8 + (s % 2) * 4 + c], want);
        }
  for (int o = 0; o < 32; ++o)
    for (int tap = 0; tap < 36; ++tap)
      for (int c = 0; c < 16; ++c)
        EXPECT_EQ(ohwi[o * 576 + tap * 16 + c], c < 3 ? w[(o * 36 + tap) * 3 + c] : 0);
}

TEST(ConvInt8Reference, RejectsBadGeometry) {
  ConvInt8Epilogue e;
  const float scale = 1.0f;
  e.weight_scales = &scale;
  const ConvInt8Shape good{1, 8, 4, 4, 1, 3, 1, 1};
  EXPECT_TRUE(check_conv_int8(good, {8, 0}, {1, 0}, e).is_ok());
  EXPECT_FALSE(check_conv_int8({0, 8, 4, 4, 1, 3, 1, 1}, {8, 0}, {1, 0}, e).is_ok());
  EXPECT_FALSE(check_conv_int8(good, {8, 4}, {1, 0}, e).is_ok());
  EXPECT_FALSE(check_conv_int8(good, {8, 0}, {2, 2}, e).is_ok());
  EXPECT_FALSE(check_conv_int8({1, 8, 1, 1, 1, 5, 1, 1}, {8, 0}, {1, 0}, e).is_ok());
  ConvInt8Epilogue no_scales;
  EXPECT_FALSE(check_conv_int8(good, {8, 0}, {1, 0}, no_scales).is_ok());
  no_scales.output = ConvOutput::kInt32Accumulator;
  EXPECT_TRUE(check_conv_int8(good, {8, 0}, {1, 0}, no_scales).is_ok());
  e.output_scale = -1.0f;
  const Status bad = check_conv_int8(good, {8, 0}, {1, 0}, e);
  EXPECT_NE(bad.message().find("output_scale"), std::string::npos) << bad.message();
}

// The CUDA kernels' multiply-shift division, against '/', for every divisor they can meet.
TEST(ConvInt8Reference, FastDivmodMatchesDivision) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> any(0, INT32_MAX);
  std::vector<int32_t> divisors;
  for (int32_t d = 1; d <= 4096; ++d) divisors.push_back(d);
  for (int32_t d : {6400, 25600, 102400, 409600, 1 << 20, 1000003, INT32_MAX}) divisors.push_back(d);
  for (const int32_t d : divisors) {
    const cuda::FastDivmod fast(d);
    std::vector<int32_t> numerators = {0, 1, d - 1, d, d + 1, INT32_MAX, INT32_MAX - 1};
    for (int i = 0; i < 200; ++i) numerators.push_back(any(rng));
    for (int32_t k : {1, 2, 3, 1000, 100000}) {
      if (int64_t{d} * k - 1 <= INT32_MAX) numerators.push_back(int32_t(int64_t{d} * k - 1));
      if (int64_t{d} * k <= INT32_MAX) numerators.push_back(int32_t(int64_t{d} * k));
    }
    for (const int32_t n : numerators) {
      if (n < 0) continue;
      int32_t rest = -1;
      ASSERT_EQ(fast.divmod(n, rest), n / d) << n << " / " << d;
      ASSERT_EQ(rest, n % d) << n << " % " << d;
    }
  }
}

}  // namespace
}  // namespace qyolo
