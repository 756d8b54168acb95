// Overlapped kernel launches (programmatic dependent launch, sm_90 and later): a kernel launched
// with launch_kernel() may start while the kernel before it in the stream is still running; it
// runs nothing that reads or writes activations before wait_for_previous_kernel(), which
// returns once that kernel has finished and its writes are visible. What the overlap hides is
// the launch itself and whatever a kernel does before its wait (the direct convolutions load
// their weights there). A batch-1 network is ~80 short kernels back to back, so the gaps
// between them are a large share of its time.
//
// Every kernel launched through launch_kernel() must call wait_for_previous_kernel() before its
// first access to memory an earlier kernel writes or reads (activations; weights and
// parameters are written once, at load, by copies). Kernels chain: each one's wait covers the
// kernel before it, which waited in turn, so a kernel never overlaps any but its predecessor.
// QYOLO_CUDA_OVERLAP_LAUNCHES=0 launches every kernel plainly (one after another).
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "qyolo/cuda.h"

namespace qyolo::cuda {

// Waits for the previous kernel of the stream (a no-op where the launch was not overlapped,
// and before sm_90), then lets the next kernel start launching.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether `kernel` carries the wait: it was compiled from sm_90 or later code (its PTX
// version; a kernel the driver JIT-compiles from older PTX, e.g. compute_80 on a newer GPU,
// has none and must not overlap). Looked up once per kernel and device.
inline bool kernel_waits(const void* kernel) {
  struct Entry {
    const void* kernel;
    int device;
    bool waits;
  };
  static std::mutex mutex;
  static std::vector<Entry> known;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  std::lock_guard<std::mutex> lock(mutex);
  for (const Entry& e : known)
    if (e.kernel == kernel && e.device == device) return e.waits;
  cudaFuncAttributes attributes{};
  bool waits = false;
  if (cudaFuncGetAttributes(&attributes, kernel) == cudaSuccess) {
    waits = attributes.ptxVersion >= 90 && attributes.binaryVersion >= 90;
  } else {
    (void)cudaGetLastError();  // not the launch's error
  }
  known.push_back({kernel, device, waits});
  return waits;
}

// Whether a launch of `kernel` overlaps: allowed on this thread (qyolo/cuda.h's
// LaunchOverlapScope), not turned off by QYOLO_CUDA_OVERLAP_LAUNCHES=0, and the kernel as it
// runs on this device has the wait (sm_90 and later).
inline bool overlapped_launch(const void* kernel) {
  static const bool enabled = [] {
    const char* v = std::getenv("QYOLO_CUDA_OVERLAP_LAUNCHES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled && launch_overlap_allowed() && kernel_waits(kernel);
}

// kernel<<<grid, block, smem, stream>>>(args...), overlapped with the previous kernel where
// overlapped_launch(kernel); returns the launch's error.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = overlapped_launch(reinterpret_cast<const void*>(kernel)) ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace qyolo::cuda
