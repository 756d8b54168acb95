// GPU head decode + validation NMS against the CPU path (qyolo::decode_heads,
// non_max_suppression with conf 0.001 / IoU 0.6 / multi-label / class-aware / 30000 / 300, and
// scale_boxes), on yolov5n's real head outputs for val2017-mini images (fixtures written by
// make_cuda_ops_fixtures) as fp16 and as int8 heads, batched, and on random heads that stress
// the max_nms and max_det caps. Boxes, scores and classes must be bit-identical.
#include <cstdlib>
#include <filesystem>
#include <random>

#include "ops_test_util.h"
#include "qyolo/tensor.h"
#include "qyolo/vision.h"

namespace qyolo {
namespace {

using namespace testing_cuda;

// One image's three heads, NCHW float (the values the CPU reference decodes).
struct ImageHeads {
  int width = 0, height = 0;  // the original image
  std::vector<Tensor> heads;  // 1 x 255 x H x W, strides 8, 16, 32
};

enum class Kind { kFloat16, kInt8 };

struct Prepared {
  std::vector<cuda::DeviceBuffer> buffers;
  cuda::HeadsArgs args;
};

// Packs a batch of heads as NHWC slices (pixel stride 256, offset 0) of fp16 or int8, or with
// `block` > 0 in the engine's blocked output layout (N x ceil(C/block) x H x W x block), and
// rewrites the float heads to what the device sees (half-rounded, or q * scale).
Prepared prepare(std::vector<ImageHeads>& batch, Kind kind, int block = 0) {
  Prepared p;
  cuda::HeadsArgs& a = p.args;
  a.batch = int(batch.size());
  a.type = kind == Kind::kInt8 ? cuda::HeadType::kInt8 : cuda::HeadType::kFloat16;
  cuda::set_default_anchors(a);
  for (int l = 0; l < 3; ++l) {
    const Shape& s = batch[0].heads[l].shape();
    const int h = int(s[2]), w = int(s[3]), channels = int(s[1]), stride = 256;
    float amax = 0;
    for (auto& im : batch)
      for (int64_t i = 0; i < im.heads[l].numel(); ++i)
        amax = std::max(amax, std::fabs(im.heads[l].data<float>()[i]));
    const float scale = amax / 127.0f;
    a.scales[l] = scale;
    const int blocks = block ? (channels + block - 1) / block : 0;
    const size_t image = block ? size_t(blocks) * h * w * block : size_t(h) * w * stride;
    std::vector<uint16_t> h16(size_t(a.batch) * image, 0);
    std::vector<int8_t> q8(h16.size(), 0);
    for (int n = 0; n < a.batch; ++n) {
      float* src = batch[n].heads[l].data<float>();
      for (int c = 0; c < channels; ++c)
        for (int p2 = 0; p2 < h * w; ++p2) {
          float& v = src[size_t(c) * h * w + p2];
          const size_t at = block ? ((size_t(n) * blocks + c / block) * h * w + p2) * block +
                                        c % block
                                  : (size_t(n) * h * w + p2) * stride + c;
          if (kind == Kind::kInt8) {
            q8[at] = quantize_rne(v, scale);
            v = static_cast<float>(q8[at]) * scale;
          } else {
            h16[at] = float_to_half_rne(v);
            v = half_to_float_bits(h16[at]);
          }
        }
    }
    p.buffers.push_back(kind == Kind::kInt8 ? upload(q8) : upload(h16));
    a.heads[l].data = p.buffers.back().data();
    a.heads[l].layout = {stride, 0};
    a.heads[l].channel_block = block;
    a.heads[l].height = h;
    a.heads[l].width = w;
  }
  return p;
}

struct Compared {
  int64_t detections = 0, different = 0, rows = 0, row_values_different = 0;
  int most_candidates = 0;  // of one image
};

// Runs decode and detect on the device and compares with the CPU path, image by image.
void compare(std::vector<ImageHeads> batch, Kind kind, int max_nms, int max_det, bool map_back,
             Compared& totals, int block = 0, bool multi_label = true, float conf = 0.001f,
             float iou = 0.6f, bool half_table = true) {
  Prepared p = prepare(batch, kind, block);
  // fp16 heads: the CPU's sigmoid table, so decoded values and boxes are the CPU's bit for bit.
  cuda::DeviceBuffer table;
  if (kind == Kind::kFloat16 && half_table) {
    table = upload(cuda::half_sigmoid_table());
    p.args.half_sigmoid = table.as<float>();
  }
  const int n = p.args.batch;
  const int64_t rows = cuda::head_rows(p.args);
  auto decoded = cuda::DeviceBuffer::allocate(size_t(n) * rows * 85 * sizeof(float));
  ASSERT_TRUE(decoded.has_value());
  QYOLO_ASSERT_OK(cuda::decode_heads(p.args, decoded->as<float>(), nullptr));
  const auto rows_gpu = download<float>(*decoded, size_t(n) * rows * 85);

  cuda::DetectArgs d;
  d.heads = p.args;
  d.max_nms = max_nms;
  d.max_det = max_det;
  d.multi_label = multi_label;
  d.conf_threshold = conf;
  d.iou_threshold = iou;
  std::vector<cuda::LetterboxPlan> plans;
  for (const auto& im : batch) plans.push_back(cuda::letterbox_plan(im.width, im.height, 640, 640));
  auto dplans = upload(plans);
  if (map_back) d.plans = dplans.as<cuda::LetterboxPlan>();
  auto workspace = cuda::DeviceBuffer::allocate(cuda::detect_workspace_bytes(d));
  auto boxes = cuda::DeviceBuffer::allocate(size_t(n) * max_det * sizeof(cuda::DetectionBox));
  auto counts = cuda::DeviceBuffer::allocate(n * sizeof(int));
  auto candidates = cuda::DeviceBuffer::allocate(n * sizeof(int));
  ASSERT_TRUE(workspace && boxes && counts && candidates);
  d.workspace = workspace->data();
  d.detections = boxes->as<cuda::DetectionBox>();
  d.counts = counts->as<int>();
  d.candidate_counts = candidates->as<int>();
  QYOLO_ASSERT_OK(cuda::detect(d, nullptr));
  const auto got = download<cuda::DetectionBox>(*boxes, size_t(n) * max_det);
  const auto got_counts = download<int>(*counts, n);
  const auto got_candidates = download<int>(*candidates, n);

  NmsOptions options;
  options.max_nms = max_nms;
  options.max_det = max_det;
  options.multi_label = multi_label;
  options.conf_threshold = conf;
  options.iou_threshold = iou;
  for (int i = 0; i < n; ++i) {
    std::vector<const Tensor*> heads;
    for (auto& t : batch[i].heads) heads.push_back(&t);
    auto cpu_rows = decode_heads(heads, HeadAnchors{});
    ASSERT_TRUE(cpu_rows.has_value()) << cpu_rows.status().message();
    const float* r = cpu_rows->data<float>();
    int64_t row_bad = 0;
    for (int64_t k = 0; k < rows * 85; ++k) row_bad += r[k] != rows_gpu[size_t(i) * rows * 85 + k];
    totals.rows += rows;
    totals.row_values_different += row_bad;
    // Without the table, fp16 heads' sigmoid is computed in double: an ulp off the CPU's expf on
    // a few values, which the real heads' boxes do not feel.
    if (kind == Kind::kInt8 || half_table) {
      EXPECT_EQ(row_bad, 0) << "image " << i << ": decoded values";
    }
    std::vector<Detection> cpu = non_max_suppression(r, rows, 85, options);
    if (map_back) {
      Letterbox placement;
      Image blank;
      blank.width = batch[i].width;
      blank.height = batch[i].height;
      blank.pixels.assign(size_t(blank.width) * blank.height * 3, 0);
      letterbox(blank, 640, 640, &placement);
      scale_boxes(placement, cpu);
    }
    ASSERT_LE(got_candidates[i], 1 << 17) << "image " << i << ": candidate buffer overflowed";
    totals.most_candidates = std::max(totals.most_candidates, got_candidates[i]);
    ASSERT_EQ(got_counts[i], int(cpu.size()))
        << "image " << i << ", " << got_candidates[i] << " candidates";
    int64_t different = 0;
    for (size_t k = 0; k < cpu.size(); ++k) {
      const cuda::DetectionBox& g = got[size_t(i) * max_det + k];
      const Detection& c = cpu[k];
      const bool same = g.x1 == c.x1 && g.y1 == c.y1 && g.x2 == c.x2 && g.y2 == c.y2 &&
                        g.score == c.score && g.class_id == c.class_id;
      if (!same && different < 3)
        ADD_FAILURE() << "image " << i << " detection " << k << ": gpu (" << g.x1 << ", " << g.y1
                      << ", " << g.x2 << ", " << g.y2 << ", " << g.score << ", " << g.class_id
                      << ") cpu (" << c.x1 << ", " << c.y1 << ", " << c.x2 << ", " << c.y2 << ", "
                      << c.score << ", " << c.class_id << ")";
      different += !same;
    }
    totals.detections += int64_t(cpu.size());
    totals.different += different;
    std::printf("  image %d: %d candidates, %zu detections, %lld different\n", i, got_candidates[i],
                cpu.size(), (long long)different);
  }
}

std::vector<ImageHeads> load_fixtures() {
  std::vector<ImageHeads> out;
  for (int i = 0;; ++i) {
    const std::string base = fixtures_dir() + "/";
    if (!std::filesystem::exists(base + "image_" + std::to_string(i) + ".npy")) break;
    Npy image;
    std::string error;
    EXPECT_TRUE(read_npy_file(base + "image_" + std::to_string(i) + ".npy", image, error)) << error;
    ImageHeads im;
    im.height = int(image.shape[0]);
    im.width = int(image.shape[1]);
    for (int grid : {80, 40, 20}) {
      Npy h;
      const std::string path =
          base + "heads_" + std::to_string(i) + "_" + std::to_string(grid) + ".npy";
      EXPECT_TRUE(read_npy_file(path, h, error)) << error;
      EXPECT_EQ(h.descr, "<f2") << path;
      Tensor t(DType::kFloat32, {1, h.shape[1], h.shape[2], h.shape[3]});
      const uint16_t* bits = reinterpret_cast<const uint16_t*>(h.bytes.data());
      for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = half_to_float_bits(bits[k]);
      im.heads.push_back(std::move(t));
    }
    out.push_back(std::move(im));
  }
  return out;
}

TEST(CudaDetect, RealHeadsGiveTheCpuBoxesBitForBit) {
  QYOLO_SKIP_WITHOUT_GPU();
  const auto batch = load_fixtures();
  ASSERT_FALSE(batch.empty()) << "no fixtures in " << fixtures_dir()
                              << " (make_cuda_ops_fixtures writes them)";
  // NHWC slices, then the engine's output layouts: fp16:chw16 and int8:chw32.
  for (int blocked = 0; blocked < 2; ++blocked)
    for (Kind kind : {Kind::kFloat16, Kind::kInt8}) {
      const int block = blocked ? (kind == Kind::kInt8 ? 32 : 16) : 0;
      const char* name = kind == Kind::kInt8 ? (block ? "int8:chw32" : "int8 nhwc")
                                             : (block ? "fp16:chw16" : "fp16 nhwc");
      std::printf("%s heads, batch %zu:\n", name, batch.size());
      Compared totals;
      compare(batch, kind, 30000, 300, true, totals, block);
      EXPECT_EQ(totals.different, 0) << name;
      std::printf(
          "detect (%s heads): %lld/%lld detections identical; decoded values: %lld of "
          "%lld differ\n",
          name, (long long)(totals.detections - totals.different), (long long)totals.detections,
          (long long)totals.row_values_different, (long long)(totals.rows * 85));
    }
  // fp16 heads without the CPU's sigmoid table (HeadsArgs::half_sigmoid null).
  Compared totals;
  compare(batch, Kind::kFloat16, 30000, 300, true, totals, 16, true, 0.001f, 0.6f, false);
  EXPECT_EQ(totals.different, 0) << "fp16:chw16 without the table";
  std::printf("detect (fp16:chw16 heads, sigmoid in double): %lld/%lld detections identical; "
              "decoded values: %lld of %lld differ\n",
              (long long)(totals.detections - totals.different), (long long)totals.detections,
              (long long)totals.row_values_different, (long long)(totals.rows * 85));
}

// From 16 images on, each image's candidates are sorted by one block (detect.cu's block radix
// sort) instead of the segmented sort: the fixture images repeated to a batch of 16.
TEST(CudaDetect, ABatchOfSixteenGivesTheCpuBoxes) {
  QYOLO_SKIP_WITHOUT_GPU();
  const auto fixtures = load_fixtures();
  ASSERT_FALSE(fixtures.empty()) << "no fixtures in " << fixtures_dir();
  std::vector<ImageHeads> batch;
  while (batch.size() < 16) batch.push_back(fixtures[batch.size() % fixtures.size()]);
  for (Kind kind : {Kind::kFloat16, Kind::kInt8}) {
    Compared totals;
    compare(batch, kind, 30000, 300, true, totals, kind == Kind::kInt8 ? 32 : 16);
    EXPECT_EQ(totals.different, 0);
    std::printf("detect, batch 16 (%s heads): %lld/%lld detections identical\n",
                kind == Kind::kInt8 ? "int8:chw32" : "fp16:chw16",
                (long long)(totals.detections - totals.different), (long long)totals.detections);
  }
}

// Large classes, heads built to order: `classes` of the 80 (every row's score high in those,
// -9 elsewhere), random objectness and boxes.
ImageHeads large_class_image(std::mt19937& rng, int classes) {
  std::normal_distribution<float> nd(0.0f, 2.0f);
  ImageHeads im;
  im.width = 640, im.height = 640;
  for (int grid : {80, 40, 20}) {
    Tensor t(DType::kFloat32, {1, 255, grid, grid});
    float* v = t.data<float>();
    for (int a = 0; a < 3; ++a)
      for (int field = 0; field < 85; ++field)
        for (int cell = 0; cell < grid * grid; ++cell) {
          float value = nd(rng);
          if (field >= 5) value = field - 5 < classes ? 2.0f + nd(rng) : -9.0f;
          v[(a * 85 + field) * grid * grid + cell] = value;
        }
    im.heads.push_back(std::move(t));
  }
  return im;
}

// A batch of 16 where two images have more than 16,384 candidates: those go to the segmented
// sort, the others to the block sort, in the same detect call.
TEST(CudaDetect, ABatchOfSixteenWithImagesOverTheBlockSortGivesTheCpuBoxes) {
  QYOLO_SKIP_WITHOUT_GPU();
  const auto fixtures = load_fixtures();
  ASSERT_FALSE(fixtures.empty()) << "no fixtures in " << fixtures_dir();
  std::mt19937 rng(8);
  std::vector<ImageHeads> batch;
  while (batch.size() < 16) {
    if (batch.size() == 3 || batch.size() == 12)
      batch.push_back(large_class_image(rng, batch.size() == 3 ? 1 : 2));
    else
      batch.push_back(fixtures[batch.size() % fixtures.size()]);
  }
  Compared totals;
  compare(batch, Kind::kInt8, 30000, 300, true, totals, 32);
  EXPECT_EQ(totals.different, 0);
  EXPECT_GT(totals.detections, 0);
  EXPECT_GT(totals.most_candidates, 16384) << "no image went to the segmented sort";
  std::printf("detect, batch 16 with 2 images over 16384 candidates: %lld/%lld identical\n",
              (long long)(totals.detections - totals.different), (long long)totals.detections);
}

// detect.py's settings: each box's best class only, conf 0.25, IoU 0.45; and single-label at the
// validation thresholds, where many boxes' best classes tie or sit just above conf.
TEST(CudaDetect, SingleLabelGivesTheCpuBoxes) {
  QYOLO_SKIP_WITHOUT_GPU();
  const auto batch = load_fixtures();
  ASSERT_FALSE(batch.empty()) << "no fixtures in " << fixtures_dir();
  for (Kind kind : {Kind::kFloat16, Kind::kInt8})
    for (const auto& [conf, iou] : {std::pair{0.25f, 0.45f}, std::pair{0.001f, 0.6f}}) {
      Compared totals;
      compare(batch, kind, 30000, 300, true, totals, kind == Kind::kInt8 ? 32 : 16, false, conf,
              iou);
      EXPECT_EQ(totals.different, 0) << "conf " << conf;
      EXPECT_GT(totals.detections, 0) << "conf " << conf;
      std::printf("single-label (%s heads, conf %g): %lld/%lld detections identical\n",
                  kind == Kind::kInt8 ? "int8:chw32" : "fp16:chw16", conf,
                  (long long)(totals.detections - totals.different), (long long)totals.detections);
    }
}

TEST(CudaDetect, RandomHeadsAtTheCapsGiveTheCpuBoxes) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<ImageHeads> batch(3);
  for (auto& im : batch) {
    im.width = 500, im.height = 375;
    for (int grid : {16, 8, 4}) {
      Tensor t(DType::kFloat32, {1, 255, grid, grid});
      for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = nd(rng);
      im.heads.push_back(std::move(t));
    }
  }
  for (const auto& [max_nms, max_det] : {std::pair{30000, 300}, std::pair{700, 50}}) {
    Compared totals;
    compare(batch, Kind::kFloat16, max_nms, max_det, false, totals);
    EXPECT_EQ(totals.different, 0) << "max_nms " << max_nms << " max_det " << max_det;
  }
}

// Classes with thousands of candidates: the NMS runs them block-wide, with their boxes in
// shared memory up to a few thousand and read from global memory beyond.
TEST(CudaDetect, LargeClassesGiveTheCpuBoxes) {
  QYOLO_SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  // Image 0: class 0 everywhere; image 1: classes 0 and 1 about half each.
  std::vector<ImageHeads> batch{large_class_image(rng, 1), large_class_image(rng, 2)};
  for (const auto& [max_nms, max_det] : {std::pair{30000, 300}, std::pair{2000, 300}}) {
    Compared totals;
    compare(batch, Kind::kFloat16, max_nms, max_det, false, totals);
    EXPECT_EQ(totals.different, 0) << "max_nms " << max_nms << " max_det " << max_det;
    EXPECT_GT(totals.detections, 0);
  }
}

TEST(CudaDetect, BadHeadsAreOneLineErrors) {
  cuda::HeadsArgs a;
  a.batch = 1;
  Status s = cuda::decode_heads(a, nullptr, nullptr);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("head 0"), std::string::npos) << s.message();
  int8_t byte = 0;
  for (auto& h : a.heads) h.height = h.width = 1, h.data = &byte, h.layout = {255, 0};
  a.heads[1].channel_block = 8;
  s = cuda::decode_heads(a, reinterpret_cast<float*>(&byte), nullptr);
  EXPECT_NE(s.message().find("head 1 channel_block 8"), std::string::npos) << s.message();
}

// The experiments' switches take 0 or 1; anything else is a one-line error naming the
// variable, before anything is launched (so no GPU is needed).
TEST(CudaDetect, BadExperimentSwitchesAreOneLineErrors) {
  cuda::DetectArgs d;
  d.heads.batch = 1;
  int8_t byte = 0;
  for (auto& h : d.heads.heads) h.height = h.width = 1, h.data = &byte, h.layout = {255, 0};
  d.workspace = &byte;
  d.detections = reinterpret_cast<cuda::DetectionBox*>(&byte);
  d.counts = reinterpret_cast<int*>(&byte);
  for (const char* name : {"QYOLO_DETECT_NMS_SPLIT"}) {
    ASSERT_EQ(setenv(name, "yes", 1), 0);
    const Status s = cuda::detect(d, nullptr);
    unsetenv(name);
    EXPECT_FALSE(s.is_ok()) << name;
    EXPECT_NE(s.message().find(std::string(name) + "=yes (0 or 1)"), std::string::npos)
        << s.message();
  }
}

}  // namespace
}  // namespace qyolo
