// Reformats at the I/O edges (int8 / fp16 NHWC slices -> fp16:chw16, int8:chw32, fp32 NCHW)
// and the int8 <-> fp16 conversions at precision edges, against CPU references; all exact
// (dequantize q * s in float, round to half to nearest even, quantize rne(x / s)).
#include <random>

#include "ops_test_util.h"

namespace qyolo {
namespace {

using namespace testing_cuda;

TEST(CudaReformat, EveryInputAndOutputFormatMatchesExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  const cuda::NhwcShape shape{2, 5, 7, 85};  // 85: both block sizes get a ragged last block
  const ChannelSlice layout{112, 16};        // the slice of a wider tensor, 16-aligned
  const size_t pixels = size_t(shape.batch) * shape.height * shape.width;
  std::vector<int8_t> q(pixels * layout.stride);
  std::vector<uint16_t> h(pixels * layout.stride);
  std::uniform_int_distribution<int> d(-128, 127);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (auto& v : q) v = int8_t(d(rng));
  for (auto& v : h) v = float_to_half_rne(nd(rng));
  const float s_in = 0.0421f, s_out = 0.0233f;
  auto dq = upload(q);
  auto dh = upload(h);
  int64_t checked = 0;
  for (auto input : {cuda::ReformatInput::kInt8, cuda::ReformatInput::kFloat16})
    for (auto format : {cuda::ReformatOutput::kFloat16Chw16, cuda::ReformatOutput::kInt8Chw32,
                        cuda::ReformatOutput::kFloat32Nchw}) {
      const size_t count = cuda::reformat_output_elements(shape, format);
      auto out = cuda::DeviceBuffer::allocate(count * 4);
      ASSERT_TRUE(out.has_value());
      QYOLO_ASSERT_OK(out->fill(0x7b));
      cuda::ReformatArgs a;
      a.shape = shape, a.input_type = input;
      a.x = input == cuda::ReformatInput::kInt8 ? dq.data() : dh.data();
      a.x_layout = layout, a.input_scale = s_in, a.output_format = format, a.output_scale = s_out;
      a.y = out->data();
      QYOLO_ASSERT_OK(cuda::reformat(a, nullptr));
      const int block = format == cuda::ReformatOutput::kFloat16Chw16 ? 16
                        : format == cuda::ReformatOutput::kInt8Chw32  ? 32
                                                                      : 1;
      const int blocks = (shape.channels + block - 1) / block;
      const auto got8 = download<int8_t>(*out, count);
      const auto got16 = download<uint16_t>(*out, count);
      const auto got32 = download<float>(*out, count);
      int64_t bad = 0;
      const size_t hw = size_t(shape.height) * shape.width;
      for (int n = 0; n < shape.batch; ++n)
        for (int b = 0; b < blocks; ++b)
          for (size_t p = 0; p < hw; ++p)
            for (int lane = 0; lane < block; ++lane) {
              const int c = b * block + lane;
              const size_t from = (n * hw + p) * layout.stride + layout.offset + c;
              const size_t to = ((size_t(n) * blocks + b) * hw + p) * block + lane;
              const bool real = c < shape.channels;
              const float value = !real ? 0.0f
                                  : input == cuda::ReformatInput::kInt8
                                      ? static_cast<float>(q[from]) * s_in
                                      : half_to_float_bits(h[from]);
              if (format == cuda::ReformatOutput::kInt8Chw32) {
                const int8_t e = !real                                 ? 0
                                 : input == cuda::ReformatInput::kInt8 ? q[from]
                                                                       : quantize_rne(value, s_out);
                bad += got8[to] != e;
              } else if (format == cuda::ReformatOutput::kFloat16Chw16) {
                bad += got16[to] != float_to_half_rne(value);
              } else {
                bad += got32[to] != value;
              }
              ++checked;
            }
      EXPECT_EQ(bad, 0) << "input " << int(input) << " format " << int(format);
    }
  std::printf("reformat: %lld output elements over 6 format pairs identical\n", (long long)checked);
}

TEST(CudaReformat, Int8Fp16ConversionsOnSlicesMatchExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  const cuda::NhwcShape shape{1, 9, 9, 40};
  const ChannelSlice in{48, 8}, out{64, 24};
  const size_t pixels = 81;
  std::vector<int8_t> q(pixels * in.stride);
  std::vector<uint16_t> h(pixels * in.stride), target(pixels * out.stride, 0x1234);
  std::vector<int8_t> target8(pixels * out.stride, 77);
  std::uniform_int_distribution<int> d(-128, 127);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (auto& v : q) v = int8_t(d(rng));
  for (auto& v : h) v = float_to_half_rne(nd(rng));
  const float scale = 0.0173f;
  auto dq = upload(q), dh = upload(h), dy16 = upload(target), dy8 = upload(target8);
  cuda::ConvertArgs a;
  a.shape = shape, a.x_layout = in, a.y_layout = out, a.scale = scale;
  a.kind = cuda::ConvertKind::kInt8ToFloat16, a.x = dq.data(), a.y = dy16.data();
  QYOLO_ASSERT_OK(cuda::convert_int8_fp16(a, nullptr));
  a.kind = cuda::ConvertKind::kFloat16ToInt8, a.x = dh.data(), a.y = dy8.data();
  QYOLO_ASSERT_OK(cuda::convert_int8_fp16(a, nullptr));
  const auto got16 = download<uint16_t>(dy16, target.size());
  const auto got8 = download<int8_t>(dy8, target8.size());
  std::vector<uint16_t> e16 = target;
  std::vector<int8_t> e8 = target8;
  for (size_t p = 0; p < pixels; ++p)
    for (int c = 0; c < 40; ++c) {
      e16[p * out.stride + out.offset + c] =
          float_to_half_rne(static_cast<float>(q[p * in.stride + in.offset + c]) * scale);
      e8[p * out.stride + out.offset + c] =
          quantize_rne(half_to_float_bits(h[p * in.stride + in.offset + c]), scale);
    }
  EXPECT_EQ(got16, e16);
  EXPECT_EQ(got8, e8);
}

}  // namespace
}  // namespace qyolo
