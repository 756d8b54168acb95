// The runtime: runs an engine (qyolo/engine.h) on its target, with cuDLA's submission model so
// Jetson users recognise it (docs/runtime.md):
//
//   cudlaCreateDevice          -> runtime::Device::create(target)
//   cudlaModuleLoadFromMemory  -> runtime::Module::load(device, data, size) / load_file
//   cudlaModuleGetAttributes   -> Module::inputs(), outputs() (names, shapes, formats, scales)
//   cudlaMemRegister           -> Device::register_memory(ptr, bytes)  (caller-owned memory)
//   cudlaSubmitTask (hybrid)   -> Device::submit(task, stream)        (a cudaStream_t)
//   cudlaSubmitTask (standalone, NvSciSync fences) -> Device::submit(task, wait, signal)
//
// Depends on nothing but the C++ standard library and threads (and CUDA inside the CUDA
// backend). No CUDA type appears here: a stream is a `void*` that is a cudaStream_t.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "qyolo/engine.h"
#include "qyolo/status.h"

namespace qyolo::runtime {

// ---------------------------------------------------------------------------------------------
// Fences: one-shot events that plain C++ threads create, signal and wait on. A standalone task
// waits for its wait fences and signals its signal fences when it is done (with the task's
// Status, so an error reaches whoever waits). On the CPU target the device's own worker threads
// run the task; on the CUDA target the backend maps them onto CUDA events.
class Fence {
 public:
  static std::shared_ptr<Fence> create();

  // Marks the fence done with `status`; later calls are ignored (the first status wins).
  void signal(Status status = Status::ok());
  // Blocks until signalled; returns the status it was signalled with.
  Status wait() const;
  // False when `timeout` passed first.
  bool wait_for(std::chrono::milliseconds timeout) const;
  bool signaled() const;
  // Makes the fence unsignalled again, for reuse across iterations (no task may hold it).
  void reset();
  // Runs `callback` once the fence is signalled (at once when it already is), on the thread
  // that signals it. How the runtime chains tasks without a thread per waiting task.
  void on_signal(std::function<void()> callback);

 private:
  Fence() = default;
  mutable std::mutex mutex_;
  mutable std::condition_variable done_;
  bool signaled_ = false;
  Status status_;
  std::vector<std::function<void()>> callbacks_;
};
using FencePtr = std::shared_ptr<Fence>;

// ---------------------------------------------------------------------------------------------
// Backend interface, in ggml's shape: a backend says which layers it can run, allocates its
// buffers, prepares a loaded engine (uploads weights, allocates the arena) and executes it.
// The CPU and CUDA backends are peers behind it.

// Memory the backend owns (host memory on the CPU, device memory on CUDA). Freed on destruction.
class BackendBuffer {
 public:
  virtual ~BackendBuffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

struct ExecuteArgs {
  int batch = 1;
  std::vector<void*> inputs;   // one per Engine::inputs, in the engine's format
  std::vector<void*> outputs;  // one per Engine::outputs
  void* stream = nullptr;      // hybrid: the caller's cudaStream_t; null: the backend's own
  // When non-null, filled with one entry per layer, in milliseconds (synchronizes per layer).
  std::vector<double>* layer_ms = nullptr;
  // Runs only layers [first_layer, end_layer) (end_layer -1: to the last): per-layer tests feed
  // one layer the reference's inputs through write_tensor and compare its output.
  int first_layer = 0, end_layer = -1;
};

// An engine prepared for one backend: its weights in backend memory and its own arena, so two
// prepared modules run at the same time without sharing state.
class PreparedEngine {
 public:
  virtual ~PreparedEngine() = default;
  // Runs every layer on args.batch images. On the CPU: returns when done. On CUDA: enqueues on
  // args.stream (or the backend's own stream, then waits) and returns.
  virtual Status execute(const ExecuteArgs& args) = 0;
  // Copies image `image` of arena tensor `tensor` (its channels only, NHWC, its element type)
  // to host memory `dst`. Debugging and per-layer tests: a tensor holds its value after the run
  // only if no later tensor reused its bytes (build with BuildOptions::reuse_memory = false).
  virtual Status read_tensor(int tensor, int image, void* dst) = 0;
  // The reverse: sets image `image` of arena tensor `tensor` from host memory in the same form.
  virtual Status write_tensor(int tensor, int image, const void* src) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual EngineTarget target() const = 0;
  virtual std::string name() const = 0;  // "cpu (2 threads)", "cuda: NVIDIA H100 ..."
  // Ok when this backend can execute `layer` (already through validate_engine: only the
  // backend's own limits are left to check); otherwise why not, naming the layer.
  virtual Status supports_layer(const Engine& engine, const EngineLayer& layer) const = 0;
  virtual Expected<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) = 0;
  // Checks that caller memory is usable by this backend (host vs device memory).
  virtual Status check_memory(const void* data, size_t bytes) const = 0;
  virtual Expected<std::unique_ptr<PreparedEngine>> prepare(const Engine& engine) = 0;
  // Hybrid submission needs a CUDA stream; the CPU backend has none.
  virtual bool supports_streams() const = 0;
  // Copies between host memory and memory of this backend (allocate(), or registered device
  // memory): a memcpy for host-memory backends, which is the default; CUDA overrides both.
  virtual Status upload(void* backend_dst, const void* host_src, size_t bytes);
  virtual Status download(void* host_dst, const void* backend_src, size_t bytes);
};

// The CPU backend: the layers in conv_int8.h's arithmetic, OpenMP over pixels and channels.
std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend on GPU `device`; without QYOLO_CUDA an error "target cuda: qyolo was built
// without QYOLO_CUDA".
Expected<std::unique_ptr<Backend>> make_cuda_backend(int device);
// Devices of a target: 1 for the cpu; the CUDA GPUs present for cuda (0 without QYOLO_CUDA).
int device_count(EngineTarget target);

// ---------------------------------------------------------------------------------------------
// The cuDLA-like API.

struct DeviceOptions {
  int device_index = 0;    // the GPU for the cuda target
  int worker_threads = 1;  // threads that run standalone tasks
};

class Module;

// Caller-owned memory made known to a device, as cudlaMemRegister. The caller keeps the memory
// alive while the handle (and any task using it) lives.
class RegisteredMemory {
 public:
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  friend class Device;
  RegisteredMemory(void* data, size_t size) : data_(data), size_(size) {}
  void* data_;
  size_t size_;
};

// One inference of one module: input and output memory in the module's I/O order, each at
// least batch * EngineIo::image_bytes() bytes. The module and the memory must outlive every
// submitted task that uses them.
struct Task {
  Module* module = nullptr;
  int batch = 0;  // 0: the module's max batch
  std::vector<const RegisteredMemory*> inputs, outputs;
};

class Device {
 public:
  // The cpu target always exists; the cuda target needs a QYOLO_CUDA build and a GPU.
  static Expected<std::unique_ptr<Device>> create(EngineTarget target, DeviceOptions options = {});
  // Takes a backend made elsewhere (tests, a future backend).
  static Expected<std::unique_ptr<Device>> create(std::unique_ptr<Backend> backend,
                                                  DeviceOptions options = {});
  ~Device();  // waits for every submitted task
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  EngineTarget target() const;
  std::string describe() const;
  Backend& backend();

  Expected<std::unique_ptr<RegisteredMemory>> register_memory(void* data, size_t bytes);

  // Hybrid mode: enqueues the whole network on `cuda_stream` (a cudaStream_t) and returns; it
  // composes with the caller's CUDA work and can be captured into a CUDA graph. Needs the cuda
  // target; the cpu target answers with an error.
  Status submit(const Task& task, void* cuda_stream);
  // Standalone mode: the task starts once every wait fence is signalled (an error in one skips
  // the task and passes the error on), runs on the device's workers, and signals every signal
  // fence with its Status. Returns at once; a bad task is rejected here.
  Status submit(const Task& task, const std::vector<FencePtr>& wait_fences,
                const std::vector<FencePtr>& signal_fences);
  // Runs a task on the calling thread and returns its Status (the simple, synchronous path).
  Status run(const Task& task);
  // Blocks until every standalone task submitted so far has finished.
  void synchronize();

  struct Impl;

 private:
  explicit Device(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Module {
 public:
  // Loads an engine for `device`: checks the file (magic, version, target, checksum), asks the
  // backend whether it supports every layer, and prepares it (weights, arena).
  static Expected<std::unique_ptr<Module>> load(Device& device, const void* data, size_t size,
                                                const std::string& source = "engine");
  static Expected<std::unique_ptr<Module>> load_file(Device& device, const std::string& path);
  static Expected<std::unique_ptr<Module>> from_engine(Device& device, Engine engine);
  ~Module();

  // Attributes (cudlaModuleGetAttributes): the I/O tensors with names, shapes, formats, scales.
  const std::vector<EngineIo>& inputs() const { return engine_.inputs; }
  const std::vector<EngineIo>& outputs() const { return engine_.outputs; }
  int max_batch() const { return engine_.max_batch; }
  const Engine& engine() const { return engine_; }

  // The arena tensor `name` of image `image` after the last execution (PreparedEngine::
  // read_tensor), as channels x pixels bytes of its element type, NHWC.
  Expected<std::vector<uint8_t>> read_tensor(const std::string& name, int image = 0);

  // Per-layer profiling of the following executions (slower: times every layer).
  void set_profiling(bool enabled) { profiling_ = enabled; }
  // Milliseconds per layer of the last profiled execution.
  const std::vector<double>& last_layer_ms() const { return layer_ms_; }

 private:
  friend class Device;
  Module(Device& device, Engine engine, std::unique_ptr<PreparedEngine> prepared);
  Status execute(const Task& task, void* stream);
  Device& device_;
  Engine engine_;
  std::unique_ptr<PreparedEngine> prepared_;
  std::mutex running_;  // one execution at a time: the arena is the module's
  bool profiling_ = false;
  std::vector<double> layer_ms_;
};

// ---------------------------------------------------------------------------------------------
// Host helpers for the I/O formats: a float32 NCHW image batch to an input buffer (int8 formats
// quantize round-half-even: q = clamp(rne(x / scale))), and an output buffer back to float32
// NCHW (int8: q * scale). What a caller without its own kernels needs.
void pack_input(const EngineIo& io, int batch, const float* nchw, void* buffer);
void unpack_output(const EngineIo& io, int batch, const void* buffer, float* nchw);

}  // namespace qyolo::runtime
