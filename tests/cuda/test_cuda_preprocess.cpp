// GPU preprocessing (letterbox + /255 + quantize) against the CPU path (qyolo::letterbox,
// image_to_tensor's /255, quantize_rne): every output byte identical, for shrinking by whole and
// fractional factors (INTER_AREA), enlarging (INTER_LINEAR), no resize, both canvases, all three
// output formats, random images and real val2017-mini photos in one batch.
#include <cstdlib>
#include <filesystem>
#include <random>

#include "ops_test_util.h"
#include "qyolo/vision.h"

namespace qyolo {
namespace {

using namespace testing_cuda;

float images_scale() {
  const uint32_t bits = 0x3c00f9f4u;  // NVIDIA's cache: images
  float s;
  std::memcpy(&s, &bits, 4);
  return s;
}

Image random_image(int width, int height, std::mt19937& rng) {
  Image im;
  im.width = width;
  im.height = height;
  im.pixels.resize(size_t(width) * height * 3);
  std::uniform_int_distribution<int> noise(0, 255);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        // Smooth gradients with noise on one channel: both regimes of the resize.
        const int v = c == 2 ? noise(rng) : (x * 255 / std::max(width - 1, 1) + y * (c + 1)) % 256;
        im.pixels[(size_t(y) * width + x) * 3 + c] = uint8_t(v);
      }
  return im;
}

struct Totals {
  int64_t bytes = 0, mismatches = 0;
};

// Runs one batch through all three formats and compares with the CPU path.
// `misalign`: image i's pixels start (i * misalign) % 4 bytes past an aligned address, and its
// buffer ends right after its last pixel (the copy path's word loads must stay inside it).
void check_batch(const std::vector<Image>& images, int size, int canvas, Totals& totals,
                 int misalign = 0) {
  const float scale = images_scale();
  std::vector<cuda::DeviceBuffer> pixels;
  std::vector<cuda::PreprocessImage> descs;
  for (size_t i = 0; i < images.size(); ++i) {
    const Image& im = images[i];
    const size_t offset = (i * misalign) % 4;
    std::vector<uint8_t> bytes(offset, 0xee);
    bytes.insert(bytes.end(), im.pixels.begin(), im.pixels.end());
    pixels.push_back(upload(bytes));
    cuda::PreprocessImage d;
    d.pixels = pixels.back().as<uint8_t>() + offset;
    d.row_bytes = im.width * 3;
    d.plan = cuda::letterbox_plan(im.width, im.height, size, canvas);
    descs.push_back(d);
  }
  const size_t n = images.size(), plane = size_t(canvas) * canvas;
  auto out = cuda::DeviceBuffer::allocate(n * plane * 4 * sizeof(float));
  ASSERT_TRUE(out.has_value());
  cuda::PreprocessArgs args;
  args.images = descs.data();
  args.count = int(n);
  args.canvas = canvas;
  args.input_scale = scale;
  args.output = out->data();
  for (auto format : {cuda::PreprocessOutput::kInt8Hwc4, cuda::PreprocessOutput::kFloat16Nchw,
                      cuda::PreprocessOutput::kFloat32Nchw}) {
    args.output_format = format;
    QYOLO_ASSERT_OK(out->fill(0x5a));
    QYOLO_ASSERT_OK(cuda::preprocess(args, nullptr));
    const auto q = download<int8_t>(*out, n * plane * 4);
    const auto h = download<uint16_t>(*out, n * plane * 3);
    const auto f = download<float>(*out, n * plane * 3);
    for (size_t i = 0; i < n; ++i) {
      Letterbox p;
      const Image boxed = letterbox(images[i], size, canvas, &p);
      const cuda::LetterboxPlan& plan = descs[i].plan;
      EXPECT_EQ(plan.left, p.left);
      EXPECT_EQ(plan.top, p.top);
      EXPECT_EQ(plan.resized_width, p.resized_width);
      EXPECT_EQ(plan.resized_height, p.resized_height);
      EXPECT_EQ(plan.gain, p.gain);
      EXPECT_EQ(plan.pad_x, p.pad_x);
      EXPECT_EQ(plan.pad_y, p.pad_y);
      int64_t bad = 0;
      for (size_t k = 0; k < plane; ++k)
        for (int c = 0; c < 4; ++c) {
          const float x = c < 3 ? static_cast<float>(boxed.pixels[k * 3 + c]) / 255.0f : 0.0f;
          bool ok = true;
          if (format == cuda::PreprocessOutput::kInt8Hwc4) {
            ok = q[(i * plane + k) * 4 + c] == (c < 3 ? quantize_rne(x, scale) : 0);
          } else if (c < 3 && format == cuda::PreprocessOutput::kFloat16Nchw) {
            ok = h[(i * 3 + c) * plane + k] == float_to_half_rne(x);
          } else if (c < 3) {
            ok = f[(i * 3 + c) * plane + k] == x;
          }
          bad += !ok;
          totals.bytes += 1;
        }
      totals.mismatches += bad;
      EXPECT_EQ(bad, 0) << "image " << i << " (" << images[i].width << "x" << images[i].height
                        << ") format " << int(format) << " canvas " << canvas;
    }
  }
}

TEST(CudaPreprocess, RandomImagesOfEverySizeMatchTheCpuLetterboxExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  const int sizes[][2] = {{640, 480}, {1280, 960}, {1920, 1080}, {1000, 750}, {333, 500},
                          {17, 9},    {641, 2},    {800, 1200},  {427, 640},  {2000, 1999},
                          {640, 640}, {320, 320},  {700, 466}};
  std::vector<Image> images;
  for (const auto& s : sizes) images.push_back(random_image(s[0], s[1], rng));
  Totals totals;
  check_batch(images, 640, 640, totals);
  check_batch(images, 640, 672, totals);  // NVIDIA's DLA sample: a 640 letterbox on 672
  check_batch(images, 640, 640, totals, 1);  // pixels 0-3 bytes off a word boundary
  std::printf("preprocess, random: %lld/%lld output values identical\n",
              (long long)(totals.bytes - totals.mismatches), (long long)totals.bytes);
}

TEST(CudaPreprocess, Val2017MiniImagesMatchTheCpuLetterboxExactly) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::vector<Image> images;
  for (int i = 0;; ++i) {
    const std::string path = fixtures_dir() + "/image_" + std::to_string(i) + ".npy";
    if (!std::filesystem::exists(path)) break;
    Npy npy;
    std::string error;
    ASSERT_TRUE(read_npy_file(path, npy, error)) << error;
    ASSERT_EQ(npy.shape.size(), 3u);
    Image im;
    im.height = int(npy.shape[0]);
    im.width = int(npy.shape[1]);
    im.pixels.assign(npy.bytes.begin(), npy.bytes.end());
    images.push_back(std::move(im));
  }
  ASSERT_FALSE(images.empty()) << "no fixtures in " << fixtures_dir()
                               << " (make_cuda_ops_fixtures writes them)";
  Totals totals;
  check_batch(images, 640, 640, totals);
  std::printf("preprocess, %zu val2017-mini images: %lld/%lld output values identical\n",
              images.size(), (long long)(totals.bytes - totals.mismatches),
              (long long)totals.bytes);
}

TEST(CudaPreprocess, BadArgumentsAreOneLineErrors) {
  cuda::PreprocessArgs args;
  args.count = 1;
  EXPECT_FALSE(cuda::preprocess(args, nullptr).is_ok());
  cuda::PreprocessImage im;
  im.plan = cuda::letterbox_plan(1000, 500, 640, 320);  // does not fit
  int8_t dummy[4];
  im.pixels = reinterpret_cast<const uint8_t*>(dummy);
  im.row_bytes = 3000;
  args.images = &im;
  args.canvas = 320;
  args.output = dummy;
  const Status s = cuda::preprocess(args, nullptr);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("does not fit"), std::string::npos) << s.message();
  // The timing experiment's override takes 1..64, else a one-line error before any launch.
  args.count = 0;
  for (const char* value : {"0", "65", "16x", ""}) {
    ASSERT_EQ(setenv("QYOLO_PREPROCESS_OVERLAP_GROUPS", value, 1), 0);
    const Status e = cuda::preprocess(args, nullptr);
    EXPECT_FALSE(e.is_ok()) << value;
    EXPECT_NE(e.message().find(std::string("QYOLO_PREPROCESS_OVERLAP_GROUPS=") + value + " (1..64)"),
              std::string::npos)
        << e.message();
  }
  ASSERT_EQ(setenv("QYOLO_PREPROCESS_OVERLAP_GROUPS", "16", 1), 0);
  EXPECT_TRUE(cuda::preprocess(args, nullptr).is_ok());
  unsetenv("QYOLO_PREPROCESS_OVERLAP_GROUPS");
}

}  // namespace
}  // namespace qyolo
