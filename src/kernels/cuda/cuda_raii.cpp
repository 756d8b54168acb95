// RAII owners for CUDA objects (include/qyolo/cuda.h). Destructors cannot report errors, so
// they release quietly; everything that can fail returns a Status.
#include <cuda_runtime_api.h>

#include <utility>

#include "qyolo/cuda.h"

namespace qyolo::cuda {

Status check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::ok();
  cudaGetLastError();  // a non-sticky error would otherwise be reported again by the next check
  return internal_error(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

Expected<std::string> describe_device(int device) {
  cudaDeviceProp prop{};
  QYOLO_RETURN_IF_ERROR(check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  int driver = 0, runtime = 0;
  QYOLO_RETURN_IF_ERROR(check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion"));
  QYOLO_RETURN_IF_ERROR(check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion"));
  return str_cat(prop.name, ", sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount,
                 " SMs, ", prop.totalGlobalMem >> 20, " MiB, CUDA driver API ", driver / 1000, ".",
                 (driver % 1000) / 10, ", runtime ", runtime / 1000, ".", (runtime % 1000) / 10);
}

// ---- DeviceBuffer

Expected<DeviceBuffer> DeviceBuffer::allocate(size_t bytes) {
  void* data = nullptr;
  if (bytes > 0)
    QYOLO_RETURN_IF_ERROR(check(cudaMalloc(&data, bytes), str_cat("cudaMalloc(", bytes, " bytes)").c_str()));
  return DeviceBuffer(data, bytes);
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Status copy_to_device(void* device, const void* host, size_t bytes) {
  QYOLO_RETURN_IF_ERROR(
      check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device"));
  return check(cudaStreamSynchronize(cudaStreamLegacy), "cudaMemcpy to device");
}

Status DeviceBuffer::upload(const void* host, size_t bytes) {
  if (bytes > size_) return invalid_argument("upload of ", bytes, " bytes into a buffer of ", size_);
  return copy_to_device(data_, host, bytes);
}

Status DeviceBuffer::download(void* host, size_t bytes) const {
  if (bytes > size_) return invalid_argument("download of ", bytes, " bytes from a buffer of ", size_);
  return check(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

Status DeviceBuffer::fill(int value) {
  // cudaMemset is asynchronous, on the legacy stream (see copy_to_device).
  QYOLO_RETURN_IF_ERROR(check(cudaMemset(data_, value, size_), "cudaMemset"));
  return check(cudaStreamSynchronize(cudaStreamLegacy), "cudaMemset");
}

// ---- Stream

Expected<Stream> Stream::create() {
  cudaStream_t stream = nullptr;
  QYOLO_RETURN_IF_ERROR(check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                              "cudaStreamCreateWithFlags"));
  return Stream(stream);
}

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Status Stream::synchronize() const {
  return check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

// ---- Event

Expected<Event> Event::create() {
  cudaEvent_t event = nullptr;
  QYOLO_RETURN_IF_ERROR(check(cudaEventCreate(&event), "cudaEventCreate"));
  return Event(event);
}

Event::~Event() {
  if (event_) cudaEventDestroy(event_);
}

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_) cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

Status Event::record(cudaStream_t stream) const {
  return check(cudaEventRecord(event_, stream), "cudaEventRecord");
}

Status Event::synchronize() const {
  return check(cudaEventSynchronize(event_), "cudaEventSynchronize");
}

Expected<float> Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0.0f;
  QYOLO_RETURN_IF_ERROR(
      check(cudaEventElapsedTime(&ms, start.event_, end.event_), "cudaEventElapsedTime"));
  return ms;
}

namespace {
thread_local int overlap_state = -1;  // -1: no scope (allowed), 0: off, 1: on
}  // namespace

bool launch_overlap_allowed() { return overlap_state != 0; }
bool launch_overlap_set() { return overlap_state >= 0; }
LaunchOverlapScope::LaunchOverlapScope(bool allowed) : saved_(overlap_state) {
  overlap_state = allowed ? 1 : 0;
}
LaunchOverlapScope::~LaunchOverlapScope() { overlap_state = saved_; }

}  // namespace qyolo::cuda
