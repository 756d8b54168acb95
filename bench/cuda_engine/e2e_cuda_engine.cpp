// The whole detection pipeline on the GPU, uint8 RGB images in and NMS'd boxes out, through the
// runtime and cuda_ops only (it builds in the standalone CUDA project,
// bench/cuda_conv/CMakeLists.txt, where qyolo's image and ONNX libraries are not):
//
//   e2e_cuda_engine --engine e.engine --images pack.rgb [--results r.json] [--batch 64]
//                   [--imgsz 640] [--seconds 1]
//
// pack.rgb holds decoded images (bench/cuda_engine/pack_images.py writes it with OpenCV, whose
// JPEG decoding qyolo's own matches byte for byte). Each batch runs cuda_ops' preprocess (the
// CPU letterbox, bit-exact) -> the engine -> cuda_ops' detect (the CPU decode and validation
// NMS: conf 0.001, IoU 0.6, multi-label, 30,000 / 300 caps); --results writes the COCO results
// file, which `qyolo cocoeval` scores like `qyolo val --save-json`'s.
//
// Then, at --batch, it times CUDA graphs, images already in device memory: preprocess, the
// network and detect alone; preprocess + network + detect; and that with the uint8 upload and
// the boxes' download from pinned host memory. Then a serving loop's throughput: two pipelines
// on two streams, batches alternating, so one batch's detect overlaps the next one's network.
// Prints a Markdown table row (columns in that order, then images/s of the network and of the
// pipeline, their ratio, the two-stream pipeline's images/s and the network's images/s over
// it) and a JSON line on stderr.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "qyolo/coco.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_ops.h"
#include "qyolo/detect_pipeline.h"
#include "qyolo/runtime.h"
#include "time_graph.h"

namespace {

using namespace qyolo;
using bench::time_graph;
using bench::Timing;

struct PackedImage {
  int64_t id = 0;
  int width = 0, height = 0;
  size_t offset = 0;  // into the pixel buffer
};

struct Pack {
  std::vector<PackedImage> images;
  std::vector<uint8_t> pixels;  // every image's RGB rows, each image 256-byte aligned
};

// "QYRGB001", uint32 count, then per image: int64 id, int32 width, int32 height, RGB bytes.
Expected<Pack> read_pack(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error("cannot open ", path);
  char magic[8];
  uint32_t count = 0;
  if (!in.read(magic, 8) || std::memcmp(magic, "QYRGB001", 8) != 0)
    return invalid_argument(path, ": not an image pack (pack_images.py writes them)");
  if (!in.read(reinterpret_cast<char*>(&count), 4)) return invalid_argument(path, ": truncated");
  Pack pack;
  for (uint32_t i = 0; i < count; ++i) {
    PackedImage im;
    int32_t size[2];
    if (!in.read(reinterpret_cast<char*>(&im.id), 8) ||
        !in.read(reinterpret_cast<char*>(size), 8))
      return invalid_argument(path, ": truncated at image ", i);
    im.width = size[0], im.height = size[1];
    if (im.width < 1 || im.height < 1 || im.width > 16384 || im.height > 16384)
      return invalid_argument(path, ": image ", i, " is ", im.width, "x", im.height);
    im.offset = pack.pixels.size();
    const size_t bytes = size_t(im.width) * im.height * 3;
    pack.pixels.resize(im.offset + (bytes + 255) / 256 * 256);
    if (!in.read(reinterpret_cast<char*>(pack.pixels.data() + im.offset), std::streamsize(bytes)))
      return invalid_argument(path, ": truncated in image ", i, " (id ", im.id, ")");
    pack.images.push_back(im);
  }
  if (pack.images.empty()) return invalid_argument(path, ": no images");
  return pack;
}

struct Options {
  std::string engine, images, results;
  int batch = 64, imgsz = 640;
  double seconds = 1.0;
};

// The pipeline at --batch for one engine: qyolo/detect_pipeline.h on a module of its own.
using runtime::DetectPipeline;
Expected<std::unique_ptr<DetectPipeline>> make_pipeline(runtime::Device& device,
                                                        const std::string& path, int batch) {
  QYOLO_ASSIGN_OR_RETURN(auto module, runtime::Module::load_file(device, path));
  auto pipeline = DetectPipeline::create(device, std::move(module), batch);
  if (!pipeline) return with_context(pipeline.status(), path);
  return pipeline;
}

// One JSON object per detection, as qyolo's write_coco_results (bbox to 3 decimals, score 5).
void append_results(std::string& out, const PackedImage& im, const cuda::DetectionBox* boxes,
                    int count) {
  char line[256];
  for (int k = 0; k < count; ++k) {
    const cuda::DetectionBox& b = boxes[k];
    std::snprintf(line, sizeof line,
                  "%s{\"image_id\": %lld, \"category_id\": %d, \"bbox\": [%.3f, %.3f, %.3f, "
                  "%.3f], \"score\": %.5f}",
                  out.size() > 2 ? ",\n" : "", (long long)im.id, coco80_to_91(b.class_id),
                  double(b.x1), double(b.y1), double(b.x2 - b.x1), double(b.y2 - b.y1),
                  double(b.score));
    out += line;
  }
}

// Images/s of a serving loop: two pipelines (two module instances, each its own buffers) on
// two streams, batches alternating between them, each pipeline's whole work (preprocess,
// network, detect) one CUDA graph, so one batch's detect overlaps the next batch's network.
// Wall time of N launches until both streams are idle.
Expected<double> pipelined_images_per_second(runtime::Device& device, const Options& o,
                                             const std::vector<cuda::PreprocessImage>& batch) {
  std::unique_ptr<DetectPipeline> pipes[2];
  cuda::Stream streams[2];
  cudaGraphExec_t execs[2] = {nullptr, nullptr};
  Status status;
  for (int k = 0; k < 2 && status.is_ok(); ++k) {
    auto p = make_pipeline(device, o.engine, o.batch);
    auto s = cuda::Stream::create();
    if (!p) status = p.status();
    else if (!s) status = s.status();
    if (!status.is_ok()) break;
    pipes[k] = std::move(*p);
    streams[k] = std::move(*s);
    status = pipes[k]->set_batch(batch);
    if (!status.is_ok()) break;
    const cudaStream_t st = streams[k].get();
    auto exec = bench::capture_graph(st, [&] { return pipes[k]->enqueue_pipeline(st); });
    if (exec) execs[k] = *exec;
    else status = exec.status();
  }
  auto launch = [&](int count) -> Status {
    for (int i = 0; i < count; ++i)
      QYOLO_RETURN_IF_ERROR(
          cuda::check(cudaGraphLaunch(execs[i % 2], streams[i % 2].get()), "graph launch"));
    QYOLO_RETURN_IF_ERROR(streams[0].synchronize());
    return streams[1].synchronize();
  };
  using clock = std::chrono::steady_clock;
  double per_launch = 0;
  if (status.is_ok()) status = launch(10);  // warm up
  if (status.is_ok()) {
    const auto begin = clock::now();
    status = launch(10);
    per_launch = std::chrono::duration<double>(clock::now() - begin).count() / 10;
  }
  double images_per_second = 0;
  if (status.is_ok()) {
    const int count = std::max(20, static_cast<int>(o.seconds / std::max(per_launch, 1e-6)));
    const auto begin = clock::now();
    status = launch(count);
    const double seconds = std::chrono::duration<double>(clock::now() - begin).count();
    images_per_second = count * double(o.batch) / seconds;
  }
  for (cudaGraphExec_t e : execs)
    if (e) cudaGraphExecDestroy(e);
  QYOLO_RETURN_IF_ERROR(status);
  return images_per_second;
}

Status run(const Options& o) {
  QYOLO_ASSIGN_OR_RETURN(Pack pack, read_pack(o.images));
  QYOLO_ASSIGN_OR_RETURN(auto device, runtime::Device::create(EngineTarget::kCuda));
  QYOLO_ASSIGN_OR_RETURN(auto pipeline, make_pipeline(*device, o.engine, o.batch));
  if (o.imgsz > pipeline->canvas())
    return invalid_argument("--imgsz ", o.imgsz, " does not fit the engine's ", pipeline->canvas(),
                            "-pixel input");
  QYOLO_ASSIGN_OR_RETURN(auto pixels, cuda::DeviceBuffer::allocate(pack.pixels.size()));
  QYOLO_RETURN_IF_ERROR(pixels.upload(pack.pixels.data(), pack.pixels.size()));
  QYOLO_ASSIGN_OR_RETURN(auto stream, cuda::Stream::create());
  auto image_at = [&](const PackedImage& im) {
    cuda::PreprocessImage p;
    p.pixels = pixels.as<uint8_t>() + im.offset;
    p.row_bytes = im.width * 3;
    p.plan = cuda::letterbox_plan(im.width, im.height, o.imgsz, pipeline->canvas());
    return p;
  };

  // Every image through the pipeline, batch by batch.
  std::string results = "[\n";
  int64_t detections = 0, overflowed = 0;
  const int max_det = pipeline->max_det();
  std::vector<cuda::DetectionBox> boxes(size_t(o.batch) * max_det);
  std::vector<int> counts(2 * o.batch);
  for (size_t first = 0; first < pack.images.size(); first += o.batch) {
    const size_t count = std::min(pack.images.size() - first, size_t(o.batch));
    std::vector<cuda::PreprocessImage> batch;
    for (size_t i = 0; i < count; ++i) batch.push_back(image_at(pack.images[first + i]));
    QYOLO_RETURN_IF_ERROR(pipeline->set_batch(batch));
    QYOLO_RETURN_IF_ERROR(pipeline->enqueue_pipeline(stream.get()));
    QYOLO_RETURN_IF_ERROR(stream.synchronize());
    QYOLO_RETURN_IF_ERROR(pipeline->boxes().download(boxes.data(), boxes.size() * sizeof(boxes[0])));
    QYOLO_RETURN_IF_ERROR(pipeline->counts().download(counts.data(), counts.size() * sizeof(int)));
    for (size_t i = 0; i < count; ++i) {
      append_results(results, pack.images[first + i], boxes.data() + i * max_det, counts[i]);
      detections += counts[i];
      overflowed += counts[o.batch + i] > pipeline->max_candidates();
    }
    std::fprintf(stderr, "\r%zu/%zu images", first + count, pack.images.size());
  }
  std::fprintf(stderr, "\n");
  results += "\n]\n";
  if (overflowed)
    std::fprintf(stderr, "warning: %lld images had more candidates than the buffer holds\n",
                 (long long)overflowed);
  if (!o.results.empty()) {
    std::ofstream out(o.results, std::ios::binary);
    if (!(out << results)) return io_error("cannot write ", o.results);
  }

  // Timing at --batch: the first `batch` images (repeated when the pack has fewer).
  std::vector<cuda::PreprocessImage> batch;
  size_t bytes = 0;
  for (int i = 0; i < o.batch; ++i) {
    const PackedImage& im = pack.images[size_t(i) % pack.images.size()];
    batch.push_back(image_at(im));
    if (size_t(i) < pack.images.size()) bytes = im.offset + size_t(im.width) * im.height * 3;
  }
  QYOLO_RETURN_IF_ERROR(pipeline->set_batch(batch));
  void* host_pixels = nullptr;
  void* host_boxes = nullptr;
  QYOLO_RETURN_IF_ERROR(cuda::check(cudaMallocHost(&host_pixels, bytes), "cudaMallocHost"));
  std::memcpy(host_pixels, pack.pixels.data(), bytes);
  const size_t box_bytes = pipeline->boxes().size() + pipeline->counts().size();
  Status status = cuda::check(cudaMallocHost(&host_boxes, box_bytes), "cudaMallocHost");
  runtime::Device& dev = *device;
  cudaStream_t s = stream.get();
  Timing network, e2e, copies, pre, post;
  if (status.is_ok()) {
    auto t = time_graph(s, o.seconds, [&] { return pipeline->enqueue_preprocess(s); });
    status = t.status();
    if (t) pre = *t;
  }
  if (status.is_ok()) {
    auto t = time_graph(s, o.seconds, [&] { return pipeline->enqueue_detect(s); });
    status = t.status();
    if (t) post = *t;
  }
  if (status.is_ok()) {
    auto t = time_graph(s, o.seconds, [&] { return pipeline->enqueue_network(s); });
    status = t.status();
    if (t) network = *t;
  }
  if (status.is_ok() && std::getenv("QYOLO_E2E_PAIRS")) {  // debugging: two stages at a time
    auto a = time_graph(s, o.seconds, [&]() -> Status {
      QYOLO_RETURN_IF_ERROR(pipeline->enqueue_preprocess(s));
      return pipeline->enqueue_network(s);
    });
    auto b = time_graph(s, o.seconds, [&]() -> Status {
      QYOLO_RETURN_IF_ERROR(pipeline->enqueue_network(s));
      return pipeline->enqueue_detect(s);
    });
    if (a && b)
      std::fprintf(stderr, "preprocess + network %.3f ms, network + detect %.3f ms\n",
                   a->median_ms, b->median_ms);
  }
  if (status.is_ok()) {
    auto t = time_graph(s, o.seconds, [&] { return pipeline->enqueue_pipeline(s); });
    status = t.status();
    if (t) e2e = *t;
  }
  if (status.is_ok()) {
    auto t = time_graph(s, o.seconds, [&]() -> Status {
      QYOLO_RETURN_IF_ERROR(cuda::check(
          cudaMemcpyAsync(pixels.data(), host_pixels, bytes, cudaMemcpyHostToDevice, s), "H2D"));
      QYOLO_RETURN_IF_ERROR(pipeline->enqueue_pipeline(s));
      QYOLO_RETURN_IF_ERROR(cuda::check(cudaMemcpyAsync(host_boxes, pipeline->boxes().data(),
                                                        pipeline->boxes().size(),
                                                        cudaMemcpyDeviceToHost, s),
                                        "D2H"));
      return cuda::check(cudaMemcpyAsync(static_cast<char*>(host_boxes) + pipeline->boxes().size(),
                                         pipeline->counts().data(), pipeline->counts().size(),
                                         cudaMemcpyDeviceToHost, s),
                         "D2H");
    });
    status = t.status();
    if (t) copies = *t;
  }
  cudaFreeHost(host_pixels);
  if (host_boxes) cudaFreeHost(host_boxes);
  QYOLO_RETURN_IF_ERROR(status);
  QYOLO_ASSIGN_OR_RETURN(const double pipelined, pipelined_images_per_second(dev, o, batch));
  std::printf("| %s | %d | %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.2f | %.0f | %.2f |\n",
              o.engine.c_str(), o.batch, (long long)detections, pre.median_ms, network.median_ms,
              post.median_ms, e2e.median_ms, copies.median_ms,
              o.batch * 1000.0 / network.median_ms, o.batch * 1000.0 / e2e.median_ms,
              e2e.median_ms / network.median_ms, pipelined,
              o.batch * 1000.0 / network.median_ms / pipelined);
  std::fprintf(stderr,
               "{\"engine\": \"%s\", \"batch\": %d, \"images\": %zu, \"detections\": %lld, "
               "\"preprocess_ms\": %.4f, \"network_ms\": %.4f, \"detect_ms\": %.4f, "
               "\"e2e_ms\": %.4f, \"e2e_copies_ms\": %.4f, \"upload_bytes\": %zu, "
               "\"pipelined_images_per_s\": %.1f}\n",
               o.engine.c_str(), o.batch, pack.images.size(), (long long)detections,
               pre.median_ms, network.median_ms, post.median_ms, e2e.median_ms, copies.median_ms, bytes,
               pipelined);
  return Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--engine" && has_value) o.engine = argv[++i];
    else if (arg == "--images" && has_value) o.images = argv[++i];
    else if (arg == "--results" && has_value) o.results = argv[++i];
    else if (arg == "--batch" && has_value) o.batch = std::atoi(argv[++i]);
    else if (arg == "--imgsz" && has_value) o.imgsz = std::atoi(argv[++i]);
    else if (arg == "--seconds" && has_value) o.seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "e2e_cuda_engine: unknown argument '%s'\n", arg.c_str());
      return 2;
    }
  }
  if (o.engine.empty() || o.images.empty() || o.batch < 1) {
    std::fprintf(stderr,
                 "usage: e2e_cuda_engine --engine e.engine --images pack.rgb [--results r.json] "
                 "[--batch 64] [--imgsz 640] [--seconds 1]\n");
    return 2;
  }
  const qyolo::Status status = run(o);
  if (!status.is_ok()) {
    std::fprintf(stderr, "e2e_cuda_engine: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}
