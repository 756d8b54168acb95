// Times the kernels of qyolo/cuda_ops.h at yolov5n's 640 shapes, batch 1, 32 and 64: median of
// 20 runs after 3 warm-ups, CUDA events on one stream. A benchmark, never a test.
//   bench_cuda_ops
#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "qyolo/cuda.h"
#include "qyolo/cuda_ops.h"

namespace qyolo {
namespace {

using cuda::DeviceBuffer;

DeviceBuffer buffer(size_t bytes, int fill = 0) {
  auto b = DeviceBuffer::allocate(bytes);
  if (!b) {
    std::fprintf(stderr, "%s\n", b.status().message().c_str());
    std::exit(1);
  }
  (void)b->fill(fill);
  return std::move(*b);
}

double time_ms(const std::function<Status(cudaStream_t)>& op, cudaStream_t stream) {
  auto start = cuda::Event::create(), end = cuda::Event::create();
  std::vector<float> times;
  for (int i = 0; i < 23; ++i) {
    (void)start->record(stream);
    const Status s = op(stream);
    (void)end->record(stream);
    if (!s.is_ok()) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return -1;
    }
    (void)end->synchronize();
    if (i >= 3) times.push_back(*cuda::Event::elapsed_ms(*start, *end));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

int run() {
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  std::printf("%s\n", cuda::describe_device(0)->c_str());
  auto stream = cuda::Stream::create();
  cudaStream_t s = stream->get();
  std::printf("%-44s %10s %10s %10s   (ms, median)\n", "kernel", "batch 1", "batch 32", "batch 64");
  auto row = [&](const char* name, const std::function<Status(int, cudaStream_t)>& op) {
    std::printf("%-44s", name);
    for (int batch : {1, 32, 64}) {
      const double ms = time_ms([&](cudaStream_t st) { return op(batch, st); }, s);
      std::printf(" %10.4f", ms);
    }
    std::printf("\n");
  };

  // Preprocess: 1280x720 RGB photos (INTER_AREA, 2x) and 500x375 (fractional INTER_AREA).
  for (const auto& [w, h] : {std::pair{1280, 720}, std::pair{500, 375}, std::pair{640, 480}}) {
    DeviceBuffer pixels = buffer(size_t(w) * h * 3, 77);
    DeviceBuffer out = buffer(size_t(64) * 640 * 640 * 4);
    std::vector<cuda::PreprocessImage> images(64);
    for (auto& im : images) {
      im.pixels = pixels.as<uint8_t>();
      im.row_bytes = w * 3;
      im.plan = cuda::letterbox_plan(w, h, 640, 640);
    }
    const std::string name =
        "preprocess " + std::to_string(w) + "x" + std::to_string(h) + " -> int8:hwc4 640";
    row(name.c_str(), [&](int batch, cudaStream_t st) {
      cuda::PreprocessArgs a;
      a.images = images.data();
      a.count = batch;
      a.input_scale = 0.0078721f;
      a.output = out.data();
      return cuda::preprocess(a, st);
    });
  }
  {
    // SPPF of yolov5n: 20x20x128 at stride 512 of the Concat, three chained pools.
    DeviceBuffer cat = buffer(size_t(64) * 20 * 20 * 512, 3);
    row("maxpool_int8 k5 SPPF x3 (20x20x128)", [&](int batch, cudaStream_t st) {
      for (int k = 0; k < 3; ++k) {
        cuda::MaxPoolInt8Args a;
        a.input = {batch, 20, 20, 128};
        a.x = cat.as<int8_t>(), a.x_layout = {512, 128 * k};
        a.y = cat.as<int8_t>(), a.y_layout = {512, 128 * (k + 1)};
        QYOLO_RETURN_IF_ERROR(cuda::maxpool_int8(a, st));
      }
      return Status::ok();
    });
    DeviceBuffer big = buffer(size_t(64) * 80 * 80 * 128, 1);
    row("resize_nearest_int8 x2 (40x40x64 -> 80x80)", [&](int batch, cudaStream_t st) {
      cuda::ResizeNearestInt8Args a;
      a.input = {batch, 40, 40, 64};
      a.x = cat.as<int8_t>(), a.x_layout = {64, 0};
      a.y = big.as<int8_t>(), a.y_layout = {128, 0};
      return cuda::resize_nearest_int8(a, st);
    });
  }
  // The three heads: FP16 1x1 convolutions 64/128/256 -> 255, then fp16:chw16 reformat.
  {
    const int grids[3] = {80, 40, 20}, channels[3] = {64, 128, 256};
    std::vector<DeviceBuffer> in, out, weights, chw16;
    std::vector<float> w_host(255 * 256, 0.01f);
    for (int l = 0; l < 3; ++l) {
      const size_t pixels = size_t(64) * grids[l] * grids[l];
      in.push_back(buffer(pixels * channels[l] * 2));
      out.push_back(buffer(pixels * 256 * 2));
      chw16.push_back(buffer(pixels * 256 * 2));
      const ConvInt8Shape shape{1, channels[l], grids[l], grids[l], 255, 1, 1, 0};
      const auto packed = cuda::pack_conv_fp16_weights(shape, w_host.data());
      weights.push_back(buffer(packed.size() * 2));
      (void)weights.back().upload(packed.data(), packed.size() * 2);
    }
    row("conv_fp16 heads x3 (1x1 -> 255, fp16 out)", [&](int batch, cudaStream_t st) {
      for (int l = 0; l < 3; ++l) {
        cuda::ConvFp16Args a;
        a.shape = {batch, channels[l], grids[l], grids[l], 255, 1, 1, 0};
        a.x = in[l].as<uint16_t>(), a.x_layout = {channels[l], 0};
        a.weights = weights[l].as<uint16_t>();
        a.y = out[l].data(), a.y_layout = {256, 0};
        QYOLO_RETURN_IF_ERROR(cuda::conv_fp16(a, st));
      }
      return Status::ok();
    });
    row("reformat heads x3 fp16 NHWC -> fp16:chw16", [&](int batch, cudaStream_t st) {
      for (int l = 0; l < 3; ++l) {
        cuda::ReformatArgs a;
        a.shape = {batch, grids[l], grids[l], 255};
        a.input_type = cuda::ReformatInput::kFloat16;
        a.x = out[l].data(), a.x_layout = {256, 0};
        a.y = chw16[l].data();
        QYOLO_RETURN_IF_ERROR(cuda::reformat(a, st));
      }
      return Status::ok();
    });
    // Decode + NMS on heads of random logits around -4 (a few thousand candidates an image).
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(-4.0f, 1.5f);
    for (int l = 0; l < 3; ++l) {
      std::vector<uint16_t> h(size_t(64) * grids[l] * grids[l] * 256);
      for (auto& v : h) v = float_to_half_rne(nd(rng));
      (void)out[l].upload(h.data(), h.size() * 2);
    }
    cuda::DetectArgs d;
    d.heads.batch = 64;
    cuda::set_default_anchors(d.heads);
    for (int l = 0; l < 3; ++l) {
      d.heads.heads[l].data = out[l].data();
      d.heads.heads[l].layout = {256, 0};
      d.heads.heads[l].height = d.heads.heads[l].width = grids[l];
    }
    DeviceBuffer workspace = buffer(cuda::detect_workspace_bytes(d));
    DeviceBuffer boxes = buffer(size_t(64) * 300 * sizeof(cuda::DetectionBox));
    DeviceBuffer counts = buffer(64 * sizeof(int)), candidates = buffer(64 * sizeof(int));
    row("detect: decode + sort + NMS (fp16 heads)", [&](int batch, cudaStream_t st) {
      cuda::DetectArgs a = d;
      a.heads.batch = batch;
      a.workspace = workspace.data();
      a.detections = boxes.as<cuda::DetectionBox>();
      a.counts = counts.as<int>();
      a.candidate_counts = candidates.as<int>();
      return cuda::detect(a, st);
    });
    std::vector<int> c(64);
    (void)candidates.download(c.data(), c.size() * sizeof(int));
    std::printf("(detect: %d candidates in image 0)\n", c[0]);
  }
  return 0;
}

}  // namespace
}  // namespace qyolo

int main() { return qyolo::run(); }
