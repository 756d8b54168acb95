// The FP16 tensor-core convolution against a float reference: half inputs and weights, products
// summed in double, bias and SiLU in float, rounded to half (or quantized to int8). The GPU
// accumulates in float32 in another order, so an output may land on the neighbouring half (or
// int8 step) when the exact value is near a rounding boundary. Tolerance: every fp16 output
// within one half ulp of the rounded reference plus 1e-5 of sum |x * w| (the float32 summation
// bound), and at most 1% of outputs not identical; int8 outputs within one step.
#include <cmath>
#include <random>

#include "ops_test_util.h"

namespace qyolo {
namespace {

using namespace testing_cuda;

struct Case {
  ConvInt8Shape shape;
  ChannelSlice in, out;
  bool silu;
  ConvOutput output;
};

float half_ulp(float v) {
  const float a = std::fabs(v);
  if (a < 6.103515625e-05f) return 5.9604645e-08f;  // subnormal spacing
  int e;
  std::frexp(a, &e);
  return std::ldexp(1.0f, e - 11);
}

TEST(CudaConvFp16, MatchesTheFloatReferenceWithinOneRounding) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const Case cases[] = {
      // yolov5n's three head convolutions (NHWC fp16 in, padded channel stride), batch 2.
      {{2, 64, 80, 80, 255, 1, 1, 0}, {64, 0}, {256, 0}, false, ConvOutput::kFloat16},
      {{2, 128, 40, 40, 255, 1, 1, 0}, {128, 0}, {256, 0}, false, ConvOutput::kFloat16},
      {{2, 256, 20, 20, 255, 1, 1, 0}, {256, 0}, {256, 0}, false, ConvOutput::kFloat16},
      // Generic k x k with SiLU, unaligned slices (scalar loads), int8 out.
      {{1, 19, 13, 11, 37, 3, 1, 1}, {40, 3}, {48, 5}, true, ConvOutput::kFloat16},
      {{3, 32, 17, 16, 64, 3, 2, 1}, {96, 32}, {64, 0}, true, ConvOutput::kInt8},
      {{1, 48, 9, 9, 70, 5, 1, 2}, {48, 0}, {80, 8}, true, ConvOutput::kInt8},
  };
  int64_t outputs = 0, identical = 0, one_step = 0, worse = 0, untouched_bad = 0;
  for (const Case& c : cases) {
    const ConvInt8Shape& s = c.shape;
    const int k = s.kernel, oh = s.out_h(), ow = s.out_w();
    const size_t in_pixels = size_t(s.batch) * s.in_h * s.in_w;
    const size_t out_pixels = size_t(s.out_pixels());
    std::vector<uint16_t> x(in_pixels * c.in.stride);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = float_to_half_rne(nd(rng));
    std::vector<float> w(size_t(s.out_channels) * k * k * s.in_channels), bias(s.out_channels);
    const float w_scale = 1.0f / std::sqrt(float(k * k * s.in_channels));
    for (auto& v : w) v = round_half(nd(rng) * w_scale);
    for (auto& v : bias) v = nd(rng) * 0.3f;
    const float out_scale = 0.02f;
    const auto packed = cuda::pack_conv_fp16_weights(s, w.data());
    const size_t out_elements = out_pixels * c.out.stride;
    const int elem = c.output == ConvOutput::kInt8 ? 1 : 2;
    std::vector<uint8_t> initial(out_elements * elem, 0xa5);
    auto dx = upload(x), dw = upload(packed), db = upload(bias), dy = upload(initial);
    cuda::ConvFp16Args a;
    a.shape = s, a.x = dx.as<uint16_t>(), a.x_layout = c.in, a.weights = dw.as<uint16_t>();
    a.bias = db.as<float>(), a.silu = c.silu, a.output = c.output, a.output_scale = out_scale;
    a.y = dy.data(), a.y_layout = c.out;
    QYOLO_ASSERT_OK(cuda::conv_fp16(a, nullptr));
    const auto got = download<uint8_t>(dy, initial.size());
    int64_t case_worse = 0;
    for (int n = 0; n < s.batch; ++n)
      for (int y = 0; y < oh; ++y)
        for (int xo = 0; xo < ow; ++xo) {
          const size_t m = (size_t(n) * oh + y) * ow + xo;
          for (int o = 0; o < s.out_channels; ++o) {
            double acc = 0, magnitude = std::fabs(bias[o]);
            for (int r = 0; r < k; ++r)
              for (int q = 0; q < k; ++q) {
                const int iy = y * s.stride - s.pad + r, ix = xo * s.stride - s.pad + q;
                if (iy < 0 || ix < 0 || iy >= s.in_h || ix >= s.in_w) continue;
                const uint16_t* xp =
                    &x[((size_t(n) * s.in_h + iy) * s.in_w + ix) * c.in.stride + c.in.offset];
                const float* wp = &w[((size_t(o) * k + r) * k + q) * s.in_channels];
                for (int ci = 0; ci < s.in_channels; ++ci) {
                  const double p = double(half_to_float_bits(xp[ci])) * wp[ci];
                  acc += p;
                  magnitude += std::fabs(p);
                }
              }
            float v = static_cast<float>(acc) + bias[o];
            if (c.silu) v = v / (1.0f + std::exp(-v));
            const size_t at = m * c.out.stride + c.out.offset + o;
            ++outputs;
            if (c.output == ConvOutput::kInt8) {
              const int e = quantize_rne(v, out_scale), g = int8_t(got[at]);
              if (g == e)
                ++identical;
              else if (std::abs(g - e) == 1)
                ++one_step;
              else
                ++worse, ++case_worse;
            } else {
              uint16_t gh;
              std::memcpy(&gh, &got[at * 2], 2);
              const uint16_t eh = float_to_half_rne(v);
              const float g = half_to_float_bits(gh);
              if (gh == eh) {
                ++identical;
              } else if (std::fabs(g - v) <= half_ulp(v) + 1e-5 * magnitude) {
                ++one_step;
              } else {
                ++worse, ++case_worse;
              }
            }
          }
          // Channels of the output row outside the slice stay as they were.
          for (int ch = 0; ch < c.out.stride; ++ch) {
            if (ch >= c.out.offset && ch < c.out.offset + s.out_channels) continue;
            for (int b = 0; b < elem; ++b)
              untouched_bad += got[(m * c.out.stride + ch) * elem + b] != 0xa5;
          }
        }
    EXPECT_EQ(case_worse, 0) << s.in_channels << "->" << s.out_channels << " k" << k;
  }
  EXPECT_EQ(worse, 0);
  EXPECT_EQ(untouched_bad, 0);
  EXPECT_LE(one_step, outputs / 100);
  std::printf(
      "conv_fp16: %lld outputs, %lld identical, %lld one rounding step (%.3g%%), "
      "%lld worse, %lld writes outside the slice\n",
      (long long)outputs, (long long)identical, (long long)one_step, 100.0 * one_step / outputs,
      (long long)worse, (long long)untouched_bad);
}

TEST(CudaConvFp16, BadArgumentsAreOneLineErrors) {
  cuda::ConvFp16Args a;
  a.shape = {1, 16, 4, 4, 8, 3, 1, 1};
  uint16_t dummy[64];
  a.x = dummy, a.y = dummy, a.weights = nullptr;
  a.x_layout = {16, 0}, a.y_layout = {8, 4};
  Status s = cuda::conv_fp16(a, nullptr);
  EXPECT_NE(s.message().find("do not fit"), std::string::npos) << s.message();
  a.y_layout = {8, 0};
  s = cuda::conv_fp16(a, nullptr);
  EXPECT_NE(s.message().find("weights"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace qyolo
