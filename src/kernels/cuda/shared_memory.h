// Host side: opting a kernel in to more than 48 KB of dynamic shared memory, once per device
// (the conv kernels and cuda_ops' detect share it).
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>

namespace qyolo::cuda {

// `done` is the kernel's own bit set of devices already opted in.
template <typename Kernel>
cudaError_t opt_in_shared_memory(Kernel* kernel, int bytes, std::atomic<uint64_t>& done) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  const uint64_t bit = uint64_t{1} << (device & 63);
  if (done.load(std::memory_order_relaxed) & bit) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) done.fetch_or(bit, std::memory_order_relaxed);
  return e;
}

}  // namespace qyolo::cuda
