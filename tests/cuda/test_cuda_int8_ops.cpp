// INT8 NHWC MaxPool, nearest Resize, requantizing copy and table lookup on channel slices,
// against plain CPU references written from the INT8 executor's rules (select exactly, then
// requantize with rne(q * s_in / s_out) where the scales differ; a Sigmoid is a 256-entry
// table). Every output byte must be identical, and bytes outside the output slice untouched.
#include <algorithm>
#include <cstdlib>
#include <random>

#include "ops_test_util.h"

namespace qyolo {
namespace {

using namespace testing_cuda;

struct Tensor8 {
  cuda::NhwcShape shape;
  ChannelSlice layout;
  std::vector<int8_t> data;  // pixels * layout.stride
  int8_t& at(int n, int y, int x, int c) {
    return data[((size_t(n) * shape.height + y) * shape.width + x) * layout.stride + layout.offset +
                c];
  }
};

Tensor8 random_tensor(cuda::NhwcShape shape, ChannelSlice layout, std::mt19937& rng) {
  Tensor8 t{shape, layout, {}};
  t.data.resize(size_t(shape.batch) * shape.height * shape.width * layout.stride);
  std::uniform_int_distribution<int> d(-128, 127);
  for (auto& v : t.data) v = int8_t(d(rng));
  return t;
}

int8_t requantize_ref(int8_t q, float from, float to) {
  return from == to ? q : quantize_rne(static_cast<float>(q) * from, to);
}

// Compares the device output buffer with the expected one, inside and outside the slice.
int64_t count_differences(const std::vector<int8_t>& expected, const cuda::DeviceBuffer& got) {
  const auto out = download<int8_t>(got, expected.size());
  int64_t bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) bad += out[i] != expected[i];
  return bad;
}

struct PoolCase {
  int kernel, stride, pad;
  cuda::NhwcShape shape;
  ChannelSlice in, out;
  float s_in, s_out;
};

TEST(CudaInt8Ops, MaxPoolMatchesTheReferenceExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  const PoolCase cases[] = {
      {5, 1, 2, {2, 20, 20, 128}, {128, 0}, {512, 256}, 0.05f, 0.05f},  // SPPF into its Concat
      {5, 1, 2, {1, 13, 11, 20}, {48, 16}, {64, 32}, 0.05f, 0.07f},     // odd, slices, rescale
      {3, 2, 1, {3, 9, 10, 7}, {7, 0}, {16, 3}, 0.02f, 0.01f},
      {2, 2, 0, {1, 8, 6, 33}, {40, 5}, {33, 0}, 0.1f, 0.1f},
      {1, 1, 0, {1, 4, 4, 16}, {16, 0}, {16, 0}, 0.1f, 0.3f},
      {5, 1, 2, {2, 9, 12, 48}, {64, 16}, {96, 48}, 0.04f, 0.061f},  // 16-channel path, rescale
  };
  int64_t total = 0;
  for (const PoolCase& pc : cases) {
    Tensor8 x = random_tensor(pc.shape, pc.in, rng);
    const int oh = cuda::pool_out_size(pc.shape.height, pc.kernel, pc.stride, pc.pad);
    const int ow = cuda::pool_out_size(pc.shape.width, pc.kernel, pc.stride, pc.pad);
    Tensor8 y = random_tensor({pc.shape.batch, oh, ow, pc.shape.channels}, pc.out, rng);
    std::vector<int8_t> expected = y.data;
    Tensor8 e{y.shape, y.layout, expected};
    for (int n = 0; n < pc.shape.batch; ++n)
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
          for (int c = 0; c < pc.shape.channels; ++c) {
            int best = -129;
            for (int ky = 0; ky < pc.kernel; ++ky)
              for (int kx = 0; kx < pc.kernel; ++kx) {
                const int iy = oy * pc.stride - pc.pad + ky, ix = ox * pc.stride - pc.pad + kx;
                if (iy < 0 || ix < 0 || iy >= pc.shape.height || ix >= pc.shape.width) continue;
                best = std::max(best, int(x.at(n, iy, ix, c)));
              }
            e.at(n, oy, ox, c) = requantize_ref(int8_t(best), pc.s_in, pc.s_out);
          }
    auto dx = upload(x.data);
    auto dy = upload(y.data);
    cuda::MaxPoolInt8Args a;
    a.input = pc.shape;
    a.kernel = pc.kernel, a.stride = pc.stride, a.pad = pc.pad;
    a.x = dx.as<int8_t>(), a.x_layout = pc.in;
    a.y = dy.as<int8_t>(), a.y_layout = pc.out;
    a.input_scale = pc.s_in, a.output_scale = pc.s_out;
    QYOLO_ASSERT_OK(cuda::maxpool_int8(a, nullptr));
    EXPECT_EQ(count_differences(e.data, dy), 0)
        << "k" << pc.kernel << " s" << pc.stride << " p" << pc.pad;
    total += int64_t(oh) * ow * pc.shape.batch * pc.shape.channels;
  }
  std::printf("maxpool_int8: %lld outputs over %zu cases identical\n", (long long)total,
              std::size(cases));
}

TEST(CudaInt8Ops, NearestResizeRequantizeAndLookupMatchExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  const cuda::NhwcShape shape{2, 10, 7, 24};
  const ChannelSlice in{32, 8}, out{80, 40};
  Tensor8 x = random_tensor(shape, in, rng);
  for (const auto& [factor, s_in, s_out] :
       {std::tuple{2, 0.03f, 0.03f}, std::tuple{2, 0.03f, 0.045f}, std::tuple{3, 0.1f, 0.02f}}) {
    Tensor8 y = random_tensor({2, 10 * factor, 7 * factor, 24}, out, rng);
    Tensor8 e = y;
    for (int n = 0; n < 2; ++n)
      for (int oy = 0; oy < 10 * factor; ++oy)
        for (int ox = 0; ox < 7 * factor; ++ox)
          for (int c = 0; c < 24; ++c)
            e.at(n, oy, ox, c) = requantize_ref(x.at(n, oy / factor, ox / factor, c), s_in, s_out);
    auto dx = upload(x.data);
    auto dy = upload(y.data);
    cuda::ResizeNearestInt8Args a;
    a.input = shape, a.factor = factor;
    a.x = dx.as<int8_t>(), a.x_layout = in, a.y = dy.as<int8_t>(), a.y_layout = out;
    a.input_scale = s_in, a.output_scale = s_out;
    QYOLO_ASSERT_OK(cuda::resize_nearest_int8(a, nullptr));
    EXPECT_EQ(count_differences(e.data, dy), 0) << "resize x" << factor;
  }
  // Requantizing copy: a Concat input at another scale, into its slice of the output.
  for (const auto& [s_in, s_out] :
       {std::pair{0.02f, 0.05f}, std::pair{0.05f, 0.02f}, std::pair{0.0317f, 0.0317f}}) {
    Tensor8 y = random_tensor(shape, out, rng);
    Tensor8 e = y;
    for (int n = 0; n < 2; ++n)
      for (int yy = 0; yy < 10; ++yy)
        for (int xx = 0; xx < 7; ++xx)
          for (int c = 0; c < 24; ++c)
            e.at(n, yy, xx, c) = requantize_ref(x.at(n, yy, xx, c), s_in, s_out);
    auto dx = upload(x.data);
    auto dy = upload(y.data);
    cuda::RequantizeInt8Args a;
    a.shape = shape, a.x = dx.as<int8_t>(), a.x_layout = in, a.y = dy.as<int8_t>();
    a.y_layout = out, a.input_scale = s_in, a.output_scale = s_out;
    QYOLO_ASSERT_OK(cuda::requantize_int8(a, nullptr));
    EXPECT_EQ(count_differences(e.data, dy), 0) << "requantize " << s_in << " -> " << s_out;
  }
  // Sigmoid as a table, built as the INT8 executor builds it.
  const float s_in = 0.06f, s_out = 1.0f / 127.0f;
  const cuda::Int8Table table = cuda::sigmoid_table(s_in, s_out);
  for (int q = -128; q < 128; ++q) {
    const float v = static_cast<float>(q) * s_in;
    ASSERT_EQ(table.values[q + 128], quantize_rne(1.0f / (1.0f + std::exp(-v)), s_out)) << q;
  }
  Tensor8 y = random_tensor(shape, out, rng);
  Tensor8 e = y;
  for (int n = 0; n < 2; ++n)
    for (int yy = 0; yy < 10; ++yy)
      for (int xx = 0; xx < 7; ++xx)
        for (int c = 0; c < 24; ++c) e.at(n, yy, xx, c) = table.values[x.at(n, yy, xx, c) + 128];
  auto dx = upload(x.data);
  auto dy = upload(y.data);
  cuda::LookupInt8Args a;
  a.shape = shape, a.x = dx.as<int8_t>(), a.x_layout = in, a.y = dy.as<int8_t>();
  a.y_layout = out, a.table = table;
  QYOLO_ASSERT_OK(cuda::lookup_int8(a, nullptr));
  EXPECT_EQ(count_differences(e.data, dy), 0) << "sigmoid table";
}

// Slices of whole aligned 16-channel groups take the 16-channels-a-thread kernels (a
// requantization table in shared memory): YOLOv5's Concat inputs, upsampling and SPPF.
TEST(CudaInt8Ops, SixteenChannelPathsMatchExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  {  // SPPF's 5x5 MaxPool into a Concat slice at another scale
    const cuda::NhwcShape ps{2, 9, 12, 48};
    const ChannelSlice pin{64, 16}, pout{96, 48};
    Tensor8 px = random_tensor(ps, pin, rng);
    Tensor8 py = random_tensor(ps, pout, rng);
    Tensor8 pe = py;
    for (int n = 0; n < 2; ++n)
      for (int oy = 0; oy < 9; ++oy)
        for (int ox = 0; ox < 12; ++ox)
          for (int c = 0; c < 48; ++c) {
            int best = -128;
            for (int ky = std::max(oy - 2, 0); ky < std::min(oy + 3, 9); ++ky)
              for (int kx = std::max(ox - 2, 0); kx < std::min(ox + 3, 12); ++kx)
                best = std::max(best, int(px.at(n, ky, kx, c)));
            pe.at(n, oy, ox, c) = requantize_ref(int8_t(best), 0.04f, 0.061f);
          }
    auto dx = upload(px.data);
    auto dy = upload(py.data);
    cuda::MaxPoolInt8Args a;
    a.input = ps, a.kernel = 5, a.stride = 1, a.pad = 2;
    a.x = dx.as<int8_t>(), a.x_layout = pin, a.y = dy.as<int8_t>(), a.y_layout = pout;
    a.input_scale = 0.04f, a.output_scale = 0.061f;
    QYOLO_ASSERT_OK(cuda::maxpool_int8(a, nullptr));
    EXPECT_EQ(count_differences(pe.data, dy), 0) << "maxpool 16 channels";
  }
  const cuda::NhwcShape shape{2, 10, 7, 32};
  const ChannelSlice in{48, 16}, out{96, 32};
  Tensor8 x = random_tensor(shape, in, rng);
  for (const auto& [s_in, s_out] :
       {std::pair{0.03f, 0.03f}, std::pair{0.03f, 0.045f}, std::pair{0.1f, 0.0123f}}) {
    Tensor8 y = random_tensor({2, 20, 14, 32}, out, rng);
    Tensor8 e = y;
    for (int n = 0; n < 2; ++n)
      for (int oy = 0; oy < 20; ++oy)
        for (int ox = 0; ox < 14; ++ox)
          for (int c = 0; c < 32; ++c)
            e.at(n, oy, ox, c) = requantize_ref(x.at(n, oy / 2, ox / 2, c), s_in, s_out);
    auto dx = upload(x.data);
    auto dy = upload(y.data);
    cuda::ResizeNearestInt8Args a;
    a.input = shape, a.factor = 2;
    a.x = dx.as<int8_t>(), a.x_layout = in, a.y = dy.as<int8_t>(), a.y_layout = out;
    a.input_scale = s_in, a.output_scale = s_out;
    QYOLO_ASSERT_OK(cuda::resize_nearest_int8(a, nullptr));
    EXPECT_EQ(count_differences(e.data, dy), 0) << "resize " << s_in << " -> " << s_out;

    Tensor8 y2 = random_tensor(shape, out, rng);
    Tensor8 e2 = y2;
    for (int n = 0; n < 2; ++n)
      for (int yy = 0; yy < 10; ++yy)
        for (int xx = 0; xx < 7; ++xx)
          for (int c = 0; c < 32; ++c)
            e2.at(n, yy, xx, c) = requantize_ref(x.at(n, yy, xx, c), s_in, s_out);
    auto dy2 = upload(y2.data);
    cuda::RequantizeInt8Args r;
    r.shape = shape, r.x = dx.as<int8_t>(), r.x_layout = in, r.y = dy2.as<int8_t>();
    r.y_layout = out, r.input_scale = s_in, r.output_scale = s_out;
    QYOLO_ASSERT_OK(cuda::requantize_int8(r, nullptr));
    EXPECT_EQ(count_differences(e2.data, dy2), 0) << "requantize " << s_in << " -> " << s_out;
  }
}

// A Concat's requantizing copy fused into MaxPool and Resize (FusedCopyInt8): mid_scale rounds
// at the layer's own scale, then at the output's (two roundings, as the reference's own tensor
// and its copy); y2 receives y requantized to its scale. Both the 16-channel kernels (aligned
// slices) and the element kernels (a slice at offset 8), each output byte as the reference's.
TEST(CudaInt8Ops, FusedConcatCopiesMatchExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const float s_in = 0.037f, s_own = 0.052f, s_cat = 0.0611f;
  for (const int offset : {16, 8}) {
    const cuda::NhwcShape shape{2, 9, 10, 32};
    const ChannelSlice in{48, 16}, own{32, 0}, cat{96, offset};
    Tensor8 x = random_tensor(shape, in, rng);
    for (const bool resize : {false, true}) {
      const cuda::NhwcShape out_shape =
          resize ? cuda::NhwcShape{2, 18, 20, 32} : shape;
      // The selected value of each output element.
      auto selected = [&](int n, int oy, int ox, int c) {
        if (resize) return x.at(n, oy / 2, ox / 2, c);
        int best = -128;
        for (int ky = std::max(oy - 2, 0); ky < std::min(oy + 3, shape.height); ++ky)
          for (int kx = std::max(ox - 2, 0); kx < std::min(ox + 3, shape.width); ++kx)
            best = std::max(best, int(x.at(n, ky, kx, c)));
        return int8_t(best);
      };
      auto launch = [&](const cuda::DeviceBuffer& dx, int8_t* y, ChannelSlice y_layout,
                        float y_scale, const cuda::FusedCopyInt8& copy) {
        if (resize) {
          cuda::ResizeNearestInt8Args a;
          a.input = shape, a.factor = 2;
          a.x = dx.as<int8_t>(), a.x_layout = in, a.y = y, a.y_layout = y_layout;
          a.input_scale = s_in, a.output_scale = y_scale, a.copy = copy;
          return cuda::resize_nearest_int8(a, nullptr);
        }
        cuda::MaxPoolInt8Args a;
        a.input = shape, a.kernel = 5, a.stride = 1, a.pad = 2;
        a.x = dx.as<int8_t>(), a.x_layout = in, a.y = y, a.y_layout = y_layout;
        a.input_scale = s_in, a.output_scale = y_scale, a.copy = copy;
        return cuda::maxpool_int8(a, nullptr);
      };
      const std::string what = std::string(resize ? "resize" : "maxpool") + ", slice offset " +
                               std::to_string(offset);
      auto dx = upload(x.data);
      {  // read by the Concat alone: rounded at its own scale, then the Concat's
        Tensor8 y = random_tensor(out_shape, cat, rng);
        Tensor8 e = y;
        for (int n = 0; n < 2; ++n)
          for (int oy = 0; oy < out_shape.height; ++oy)
            for (int ox = 0; ox < out_shape.width; ++ox)
              for (int c = 0; c < 32; ++c)
                e.at(n, oy, ox, c) = requantize_ref(
                    requantize_ref(selected(n, oy, ox, c), s_in, s_own), s_own, s_cat);
        auto dy = upload(y.data);
        cuda::FusedCopyInt8 copy;
        copy.mid_scale = s_own;
        QYOLO_ASSERT_OK(launch(dx, dy.as<int8_t>(), cat, s_cat, copy));
        EXPECT_EQ(count_differences(e.data, dy), 0) << what << ", mid_scale";
      }
      {  // read by others too: its own tensor, and the Concat's slice besides
        Tensor8 y = random_tensor(out_shape, own, rng), y2 = random_tensor(out_shape, cat, rng);
        Tensor8 e = y, e2 = y2;
        for (int n = 0; n < 2; ++n)
          for (int oy = 0; oy < out_shape.height; ++oy)
            for (int ox = 0; ox < out_shape.width; ++ox)
              for (int c = 0; c < 32; ++c) {
                e.at(n, oy, ox, c) = requantize_ref(selected(n, oy, ox, c), s_in, s_own);
                e2.at(n, oy, ox, c) = requantize_ref(e.at(n, oy, ox, c), s_own, s_cat);
              }
        auto dy = upload(y.data);
        auto dy2 = upload(y2.data);
        cuda::FusedCopyInt8 copy;
        copy.y2 = dy2.as<int8_t>(), copy.y2_layout = cat, copy.y2_scale = s_cat;
        QYOLO_ASSERT_OK(launch(dx, dy.as<int8_t>(), own, s_own, copy));
        EXPECT_EQ(count_differences(e.data, dy), 0) << what << ", y";
        EXPECT_EQ(count_differences(e2.data, dy2), 0) << what << ", y2";
      }
    }
  }
}

TEST(CudaInt8Ops, BadSlicesAndWindowsAreOneLineErrors) {
  int8_t dummy[16];
  cuda::MaxPoolInt8Args a;
  a.input = {1, 4, 4, 16};
  a.x = a.y = dummy;
  a.x_layout = {16, 8};  // 8 + 16 > 16
  a.y_layout = {16, 0};
  Status s = cuda::maxpool_int8(a, nullptr);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("do not fit the pixel stride"), std::string::npos) << s.message();
  a.x_layout = {16, 0};
  a.pad = 5;
  EXPECT_FALSE(cuda::maxpool_int8(a, nullptr).is_ok());
  cuda::RequantizeInt8Args r;
  r.shape = {1, 1, 1, 4};
  r.x = r.y = dummy;
  r.x_layout = r.y_layout = {4, 0};
  r.output_scale = 0.0f;
  s = cuda::requantize_int8(r, nullptr);
  EXPECT_NE(s.message().find("output_scale"), std::string::npos) << s.message();
  a.pad = 2;
  a.copy.y2 = dummy;
  a.copy.y2_layout = {16, 4};
  s = cuda::maxpool_int8(a, nullptr);
  EXPECT_NE(s.message().find("maxpool_int8: y2 channels [4, 20)"), std::string::npos)
      << s.message();
  a.copy = {};
  a.copy.mid_scale = -1.0f;
  s = cuda::maxpool_int8(a, nullptr);
  EXPECT_NE(s.message().find("mid_scale -1"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace qyolo
