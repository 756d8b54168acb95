// Overlapped kernel launches (programmatic dependent launch, sm_90 and later): a kernel launched
// with launch_kernel() may start while the kernel before it in the stream is still running; it
// runs nothing that reads or writes activations before wait_for_previous_kernel(), which
// returns once that kernel has finished and its writes are visible. What the overlap hides is
// the launch itself and whatever a kernel does before its wait (the direct convolutions load
// their weights there). A batch-1 network is ~80 short kernels back to back; on an H200 the
// overlap saved 11 us of yolov5s's 0.47 ms and 29 us of yolov5n's 0.41 ms.
//
// Every kernel launched through launch_kernel() must call wait_for_previous_kernel() before its
// first access to memory an earlier kernel writes or reads (activations; weights and
// parameters are written once, at load, by copies). Kernels chain: each one's wait covers the
// kernel before it, which waited in turn, so a kernel never overlaps any but its predecessor.
// QYOLO_CUDA_OVERLAP_LAUNCHES=0 launches every kernel plainly (one after another).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

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

// The two halves of wait_for_previous_kernel, for kernels that touch nothing an earlier kernel
// uses (preprocess's per-mode launches, each writing its own images): let the next kernel start
// launching at once, and, in one thread before the kernel ends, wait for the previous kernel,
// so this kernel does not finish before it (a later kernel's wait covers both).
__device__ __forceinline__ void let_next_kernel_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void finish_after_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether launches overlap at all: not turned off by QYOLO_CUDA_OVERLAP_LAUNCHES=0, and allowed
// on this thread (qyolo/cuda.h's LaunchOverlapScope).
inline bool launch_overlap_wanted() {
  static const bool enabled = [] {
    const char* v = std::getenv("QYOLO_CUDA_OVERLAP_LAUNCHES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled && launch_overlap_allowed();
}

// Whether `kernel` carries the wait on the current device: the code it runs was compiled for
// sm_90 or later (its PTX and binary versions; a kernel the driver JIT-compiles from older PTX,
// e.g. compute_80 on a newer GPU, has none and must not overlap). Read once per device.
template <auto kernel>
bool kernel_waits() {
  static std::atomic<int> known[64];  // per device: 0 not read yet, 1 no, 2 yes
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  int state = known[device & 63].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, kernel) == cudaSuccess) {
      state = attributes.ptxVersion >= 90 && attributes.binaryVersion >= 90 ? 2 : 1;
    } else {
      (void)cudaGetLastError();  // not the launch's error
      state = 1;
    }
    known[device & 63].store(state, std::memory_order_relaxed);
  }
  return state == 2;
}

// kernel<<<grid, block, smem, stream>>>(args...), overlapped with the previous kernel where
// launch_overlap_wanted() and kernel_waits<kernel>(); returns the launch's error.
template <auto kernel, typename... Args>
cudaError_t launch_kernel(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = launch_overlap_wanted() && kernel_waits<kernel>() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace qyolo::cuda
