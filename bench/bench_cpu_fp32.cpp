// Times the FP32 CPU executor on one model: median ms per image over --iterations runs,
// and optionally the slowest steps. Prints one JSON line for bench/compare_onnxruntime.py.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "qyolo/executor.h"
#include "qyolo/onnx.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_cpu_fp32 <model.onnx> [iterations] [--profile]\n");
    return 2;
  }
  const std::string model = argv[1];
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20;
  const bool profile = argc > 3 && std::string(argv[3]) == "--profile";
  auto graph = qyolo::load_onnx(model);
  if (!graph) {
    std::fprintf(stderr, "error: %s\n", graph.status().message().c_str());
    return 1;
  }
  auto executor = qyolo::CpuExecutor::create(*graph);
  if (!executor) {
    std::fprintf(stderr, "error: %s\n", executor.status().message().c_str());
    return 1;
  }
  std::map<std::string, qyolo::Tensor> inputs;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  for (const auto& info : (*executor)->inputs()) {
    qyolo::Tensor t(info.dtype, info.shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    inputs[info.name] = std::move(t);
  }
  for (int i = 0; i < 3; ++i) (void)(*executor)->run(inputs);  // warm-up
  (*executor)->set_profiling(profile);
  std::vector<double> times;
  for (int i = 0; i < iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto out = (*executor)->run(inputs);
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
    if (!out) {
      std::fprintf(stderr, "error: %s\n", out.status().message().c_str());
      return 1;
    }
  }
  std::sort(times.begin(), times.end());
  if (profile) {
    auto steps = (*executor)->profile();
    std::sort(steps.begin(), steps.end(),
              [](const auto& a, const auto& b) { return a.milliseconds > b.milliseconds; });
    for (size_t i = 0; i < std::min<size_t>(steps.size(), 15); ++i) {
      std::fprintf(stderr, "%8.3f ms  %-10s %s\n", steps[i].milliseconds / iterations,
                   steps[i].op.c_str(), steps[i].name.c_str());
    }
  }
  std::printf("{\"engine\": \"qyolo\", \"median_ms\": %.3f, \"min_ms\": %.3f, \"steps\": %zu}\n",
              times[times.size() / 2], times.front(), (*executor)->num_steps());
  return 0;
}
