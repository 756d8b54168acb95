// Timing of GPU work for the bench tools: the work captured once into a CUDA graph and
// replayed, CUDA events around each replay (host launch cost excluded, as trtexec's
// --useCudaGraph).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "qyolo/cuda.h"

namespace qyolo::bench {

// Median and minimum milliseconds of a captured graph, replayed for `seconds` (at least 20).
struct Timing {
  double median_ms = 0, min_ms = 0;
};

// `enqueue` puts the work on `stream` (and returns a Status); it runs three times outside the
// graph first (first launches set kernel attributes), then once under capture. The caller
// destroys the instantiated graph.
template <typename Enqueue>
Expected<cudaGraphExec_t> capture_graph(cudaStream_t stream, Enqueue enqueue) {
  for (int i = 0; i < 3; ++i) QYOLO_RETURN_IF_ERROR(enqueue());  // first launches, outside
  QYOLO_RETURN_IF_ERROR(cuda::check(cudaStreamSynchronize(stream), "synchronize"));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  QYOLO_RETURN_IF_ERROR(
      cuda::check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "capture"));
  const Status enqueued = enqueue();
  QYOLO_RETURN_IF_ERROR(cuda::check(cudaStreamEndCapture(stream, &graph), "end capture"));
  QYOLO_RETURN_IF_ERROR(enqueued);
  const Status instantiated = cuda::check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaGraphDestroy(graph);
  QYOLO_RETURN_IF_ERROR(instantiated);
  return exec;
}

// The graph of capture_graph replayed for `seconds` (at least 20 times).
template <typename Enqueue>
Expected<Timing> time_graph(cudaStream_t stream, double seconds, Enqueue enqueue) {
  QYOLO_ASSIGN_OR_RETURN(cudaGraphExec_t exec, capture_graph(stream, enqueue));
  QYOLO_ASSIGN_OR_RETURN(auto start, cuda::Event::create());
  QYOLO_ASSIGN_OR_RETURN(auto stop, cuda::Event::create());
  std::vector<double> times;
  Status status;
  for (int i = 0; i < 5 && status.is_ok(); ++i)
    status = cuda::check(cudaGraphLaunch(exec, stream), "graph launch");
  const auto begin = std::chrono::steady_clock::now();
  while (status.is_ok() &&
         (times.size() < 20 ||
          std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() <
              seconds)) {
    status = start.record(stream);
    if (status.is_ok()) status = cuda::check(cudaGraphLaunch(exec, stream), "graph launch");
    if (status.is_ok()) status = stop.record(stream);
    if (status.is_ok()) status = stop.synchronize();
    if (!status.is_ok()) break;
    auto ms = cuda::Event::elapsed_ms(start, stop);
    if (!ms) status = ms.status();
    else times.push_back(*ms);
  }
  cudaGraphExecDestroy(exec);
  QYOLO_RETURN_IF_ERROR(status);
  std::sort(times.begin(), times.end());
  return Timing{times[times.size() / 2], times.front()};
}

}  // namespace qyolo::bench
