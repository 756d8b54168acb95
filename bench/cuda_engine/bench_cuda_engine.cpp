// Throughput and latency of engines on the CUDA runtime, needing nothing but the runtime and
// CUDA (it builds in the standalone CUDA project, bench/cuda_conv/CMakeLists.txt):
//
//   bench_cuda_engine [--batch 1,32,64] [--seconds 1] [--profile] [--constant-input]
//                     a.engine b.engine ...
//
// For each engine and batch: the whole network submitted in hybrid mode on one stream,
// captured once into a CUDA graph and replayed (host launch cost excluded, as trtexec's
// --useCudaGraph), inputs and outputs in device memory. Prints images/s and the median time
// per batch, as a Markdown table (and one JSON line per row on stderr).
//
// The input is what bench/pytorch_peer.py feeds PyTorch: uniform random values in [0, 1)
// (torch.rand), in the engine's input format (quantized with its scale for int8:hwc4). The time
// depends on the data: a constant image (--constant-input, every byte 7, what this tool used
// before) runs about 20% faster on an H200 than random or real images, as the tensor cores draw
// less power and the exact epilogue's fix-ups (docs/cuda_kernels.md) happen per channel, not per
// element.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qyolo/conv_int8.h"
#include "qyolo/cuda.h"
#include "qyolo/runtime.h"
#include "time_graph.h"

namespace {

using namespace qyolo;

// `batch` images of uniform [0, 1) values in the input's format (padding channels zero).
std::vector<uint8_t> random_input(const EngineIo& io, int batch) {
  std::vector<uint8_t> bytes(size_t(io.image_bytes()) * batch, 0);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const int64_t hw = int64_t{io.height} * io.width;
  for (int n = 0; n < batch; ++n) {
    uint8_t* image = bytes.data() + size_t(io.image_bytes()) * n;
    for (int c = 0; c < io.channels; ++c)
      for (int64_t i = 0; i < hw; ++i) {
        const float u = uniform(rng);
        switch (io.format) {
          case IoFormat::kInt8Hwc4:
            image[i * 4 + c] =
                uint8_t(int8_t(std::min(127.0f, std::nearbyint(u / io.scale))));
            break;
          case IoFormat::kInt8Chw32:
            image[((c / 32) * hw + i) * 32 + c % 32] =
                uint8_t(int8_t(std::min(127.0f, std::nearbyint(u / io.scale))));
            break;
          case IoFormat::kFp16Chw16: {
            const uint16_t h = float_to_half_rne(u);
            std::memcpy(image + (((c / 16) * hw + i) * 16 + c % 16) * 2, &h, 2);
            break;
          }
          case IoFormat::kFp32Chw:
            std::memcpy(image + (c * hw + i) * 4, &u, 4);
            break;
        }
      }
  }
  return bytes;
}

struct Row {
  std::string engine;
  int batch = 0;
  double images_per_s = 0, median_ms = 0, min_ms = 0;
};

Expected<Row> bench_engine(runtime::Device& device, const std::string& path, int batch,
                          double seconds, bool profile, bool constant_input) {
  QYOLO_ASSIGN_OR_RETURN(auto module, runtime::Module::load_file(device, path));
  if (batch > module->max_batch())
    return invalid_argument(path, ": batch ", batch, " above its max batch ", module->max_batch());
  std::vector<cuda::DeviceBuffer> buffers;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> registered;
  runtime::Task task;
  task.module = module.get();
  task.batch = batch;
  for (int side = 0; side < 2; ++side)
    for (const EngineIo& io : side == 0 ? module->inputs() : module->outputs()) {
      QYOLO_ASSIGN_OR_RETURN(auto b, cuda::DeviceBuffer::allocate(size_t(io.image_bytes()) * batch));
      if (side == 0 && !constant_input) {
        const std::vector<uint8_t> input = random_input(io, batch);
        QYOLO_RETURN_IF_ERROR(b.upload(input.data(), input.size()));
      } else {
        QYOLO_RETURN_IF_ERROR(b.fill(side == 0 ? 7 : 0));
      }
      QYOLO_ASSIGN_OR_RETURN(auto r, device.register_memory(b.data(), b.size()));
      (side == 0 ? task.inputs : task.outputs).push_back(r.get());
      registered.push_back(std::move(r));
      buffers.push_back(std::move(b));
    }
  QYOLO_ASSIGN_OR_RETURN(auto stream, cuda::Stream::create());
  QYOLO_ASSIGN_OR_RETURN(const bench::Timing timing,
                         bench::time_graph(stream.get(), seconds,
                                           [&] { return device.submit(task, stream.get()); }));
  if (profile) {  // one run timed layer by layer (events between layers), slowest first
    module->set_profiling(true);
    QYOLO_RETURN_IF_ERROR(device.run(task));
    const std::vector<double>& ms = module->last_layer_ms();
    std::vector<size_t> order(ms.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ms[a] > ms[b]; });
    double total = 0;
    for (double t : ms) total += t;
    std::map<std::string, double> by_op;
    for (size_t i = 0; i < ms.size(); ++i) by_op[module->engine().layers[i].op] += ms[i];
    std::printf("\nprofile of %s at batch %d: %.3f ms in %zu layers\n", path.c_str(), batch,
                total, ms.size());
    for (const auto& [op, t] : by_op)
      std::printf("  %-24s %8.3f ms %5.1f%%\n", op.c_str(), t, 100 * t / total);
    for (size_t k = 0; k < std::min<size_t>(12, order.size()); ++k)
      std::printf("  %8.3f ms  %-14s %s\n", ms[order[k]],
                  module->engine().layers[order[k]].op.c_str(),
                  module->engine().layers[order[k]].name.substr(0, 70).c_str());
    std::printf("\n");
  }
  Row row;
  row.engine = path;
  row.batch = batch;
  row.median_ms = timing.median_ms;
  row.min_ms = timing.min_ms;
  row.images_per_s = batch * 1000.0 / row.median_ms;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 32, 64};
  double seconds = 1.0;
  bool profile = false;  // --profile: the layer-by-layer times of each engine's largest batch
  bool constant_input = false;
  std::vector<std::string> engines;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--batch" && i + 1 < argc) {
      batches.clear();
      for (const char* p = argv[++i]; *p;) {
        batches.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else if (arg == "--profile") {
      profile = true;
    } else if (arg == "--constant-input") {
      constant_input = true;
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      engines.push_back(arg);
    }
  }
  if (engines.empty()) {
    std::fprintf(stderr,
                 "usage: bench_cuda_engine [--batch 1,32,64] [--seconds 1] [--profile] "
                 "[--constant-input] a.engine ...\n");
    return 2;
  }
  auto device = qyolo::runtime::Device::create(qyolo::EngineTarget::kCuda);
  if (!device) {
    std::fprintf(stderr, "bench_cuda_engine: %s\n", device.status().message().c_str());
    return 1;
  }
  std::printf("%s\n\n| engine | batch | images/s | median ms | min ms |\n|---|---|---|---|---|\n",
              (*device)->describe().c_str());
  int failures = 0;
  for (const auto& engine : engines)
    for (int batch : batches) {
      auto row =
          bench_engine(**device, engine, batch, seconds, profile && batch == batches.back(),
                       constant_input);
      if (!row) {
        std::fprintf(stderr, "bench_cuda_engine: %s\n", row.status().message().c_str());
        ++failures;
        continue;
      }
      std::printf("| %s | %d | %.0f | %.3f | %.3f |\n", row->engine.c_str(), row->batch,
                  row->images_per_s, row->median_ms, row->min_ms);
      std::fprintf(stderr,
                   "{\"engine\": \"%s\", \"batch\": %d, \"images_per_s\": %.1f, \"median_ms\": "
                   "%.4f, \"min_ms\": %.4f}\n",
                   row->engine.c_str(), row->batch, row->images_per_s, row->median_ms,
                   row->min_ms);
      std::fflush(stdout);
    }
  return failures ? 1 : 0;
}
