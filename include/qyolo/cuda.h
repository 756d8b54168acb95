// RAII owners for CUDA device memory, streams and events, and the check that turns a
// cudaError_t into a Status. Nothing here aborts or exits; every failure is a Status.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "qyolo/status.h"

namespace qyolo::cuda {

// Ok for cudaSuccess; otherwise a kInternal Status naming `what` and CUDA's own message.
// Clears the sticky last error so that the next check reports its own call.
Status check(cudaError_t error, const char* what);

// Number of usable GPUs; 0 (not an error) when there is no driver or no device, so that
// GPU tests can skip with a message.
int device_count();

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, driver 13.0, runtime 13.0" for device `device`.
Expected<std::string> describe_device(int device);

// `bytes` from host memory to device memory, complete on return. cudaMemcpy alone is not:
// from pageable memory it may return before the DMA lands, on the legacy stream, which does
// not order qyolo's non-blocking streams; this waits for that stream too.
Status copy_to_device(void* device, const void* host, size_t bytes);

// Whether the kernels this host thread launches may overlap the previous kernel of their
// stream (programmatic dependent launch, sm_90 and later: src/kernels/cuda/launch.cuh). On by
// default; a scope turns it off or on for the thread until it ends. Short kernels gain (a
// batch-1 network is ~80 of them back to back), long ones lose a little: the CUDA engine
// overlaps below batch 32 (docs/runtime.md) unless the caller's own scope is active on the
// thread (launch_overlap_set()), whose choice it keeps.
bool launch_overlap_allowed();
bool launch_overlap_set();  // a LaunchOverlapScope is active on this thread
class LaunchOverlapScope {
 public:
  explicit LaunchOverlapScope(bool allowed);
  ~LaunchOverlapScope();
  LaunchOverlapScope(const LaunchOverlapScope&) = delete;
  LaunchOverlapScope& operator=(const LaunchOverlapScope&) = delete;

 private:
  int saved_;
};

// Owns one cudaMalloc allocation. Move-only; freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Expected<DeviceBuffer> allocate(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }

  // Synchronous copies of `bytes` (at most size()) from/to host memory.
  Status upload(const void* host, size_t bytes);
  Status download(void* host, size_t bytes) const;
  // Every byte set to `value` (poisoning before a test, zeroing).
  Status fill(int value);

 private:
  DeviceBuffer(void* data, size_t size) : data_(data), size_(size) {}
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Owns one non-blocking cudaStream_t.
class Stream {
 public:
  Stream() = default;
  static Expected<Stream> create();
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  Status synchronize() const;

 private:
  explicit Stream(cudaStream_t stream) : stream_(stream) {}
  cudaStream_t stream_ = nullptr;
};

// Owns one cudaEvent_t with timing enabled.
class Event {
 public:
  Event() = default;
  static Expected<Event> create();
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const { return event_; }
  Status record(cudaStream_t stream) const;
  Status synchronize() const;
  // Milliseconds from `start` to `end`; both recorded and complete.
  static Expected<float> elapsed_ms(const Event& start, const Event& end);

 private:
  explicit Event(cudaEvent_t event) : event_(event) {}
  cudaEvent_t event_ = nullptr;
};

}  // namespace qyolo::cuda
