// The cuDLA-like runtime (qyolo/runtime.h): fences, the device with its standalone task
// scheduler, modules, and the host helpers for the I/O formats.
#include "qyolo/runtime.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <thread>

namespace qyolo::runtime {

// ---------------------------------------------------------------------------------------------
std::shared_ptr<Fence> Fence::create() { return std::shared_ptr<Fence>(new Fence()); }

void Fence::signal(Status status) {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (signaled_) return;
    signaled_ = true;
    status_ = std::move(status);
    callbacks.swap(callbacks_);
  }
  done_.notify_all();
  for (auto& callback : callbacks) callback();
}

Status Fence::wait() const {
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return signaled_; });
  return status_;
}

bool Fence::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return done_.wait_for(lock, timeout, [&] { return signaled_; });
}

bool Fence::signaled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return signaled_;
}

void Fence::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  signaled_ = false;
  status_ = Status::ok();
  callbacks_.clear();
}

void Fence::on_signal(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!signaled_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

// ---------------------------------------------------------------------------------------------
namespace {

struct Job {
  Task task;
  std::vector<FencePtr> wait, signal;
  std::atomic<int> remaining{0};
  std::mutex mutex;
  Status upstream;  // the first error among the wait fences
};

// Standalone mode's workers. Shared with the fence callbacks, so a callback that fires after
// the device is gone finds a stopped scheduler instead of a dangling pointer.
struct Scheduler {
  std::mutex mutex;
  std::condition_variable wake, idle;
  std::deque<std::shared_ptr<Job>> ready;
  int outstanding = 0;  // submitted, not finished
  bool stopping = false;
  std::vector<std::thread> workers;
  std::function<Status(const Task&)> run;

  void enqueue(std::shared_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!stopping) {
        ready.push_back(std::move(job));
        wake.notify_one();
        return;
      }
      --outstanding;
    }
    // Became ready while the device shuts down: it will not run, and says so.
    for (const FencePtr& f : job->signal)
      f->signal(internal_error("the device was destroyed before the task could run"));
  }
  void work() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !ready.empty(); });
        if (ready.empty()) return;
        job = std::move(ready.front());
        ready.pop_front();
      }
      Status status = job->upstream;
      if (status.is_ok()) status = run(job->task);
      for (const FencePtr& f : job->signal) f->signal(status);
      {
        std::lock_guard<std::mutex> lock(mutex);
        --outstanding;
      }
      idle.notify_all();
    }
  }
};

}  // namespace

struct Device::Impl {
  std::unique_ptr<Backend> backend;
  DeviceOptions options;
  std::shared_ptr<Scheduler> scheduler = std::make_shared<Scheduler>();
};

Device::Device(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Device::~Device() {
  Scheduler& s = *impl_->scheduler;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    // Ready tasks still run; tasks still waiting on fences fail their signal fences when those
    // fences come (a task whose fences never come is never signalled).
    s.stopping = true;
  }
  s.wake.notify_all();
  for (std::thread& t : s.workers) t.join();
}

Expected<std::unique_ptr<Device>> Device::create(EngineTarget target, DeviceOptions options) {
  if (target == EngineTarget::kCpu) return create(make_cpu_backend(), options);
  if (target == EngineTarget::kCuda) {
    QYOLO_ASSIGN_OR_RETURN(auto backend, make_cuda_backend(options.device_index));
    return create(std::move(backend), options);
  }
  return invalid_argument("unknown target ", uint32_t(target));
}

Expected<std::unique_ptr<Device>> Device::create(std::unique_ptr<Backend> backend,
                                                 DeviceOptions options) {
  if (!backend) return invalid_argument("no backend");
  if (options.worker_threads < 1)
    return invalid_argument("worker_threads ", options.worker_threads, " is not positive");
  auto impl = std::make_unique<Impl>();
  impl->backend = std::move(backend);
  impl->options = options;
  std::unique_ptr<Device> device(new Device(std::move(impl)));
  Device* self = device.get();
  Scheduler& s = *device->impl_->scheduler;
  s.run = [self](const Task& task) { return self->run(task); };
  for (int i = 0; i < options.worker_threads; ++i) s.workers.emplace_back([&s] { s.work(); });
  return device;
}

EngineTarget Device::target() const { return impl_->backend->target(); }
std::string Device::describe() const { return impl_->backend->name(); }
Backend& Device::backend() { return *impl_->backend; }

Expected<std::unique_ptr<RegisteredMemory>> Device::register_memory(void* data, size_t bytes) {
  QYOLO_RETURN_IF_ERROR(impl_->backend->check_memory(data, bytes));
  return std::unique_ptr<RegisteredMemory>(new RegisteredMemory(data, bytes));
}

namespace {

Status check_task(const Task& task, const Device& device, const void* module_device) {
  if (!task.module) return invalid_argument("task: no module");
  if (module_device != &device)
    return invalid_argument("task: the module was loaded on another device");
  const Module& m = *task.module;
  const int batch = task.batch ? task.batch : m.max_batch();
  if (batch < 1 || batch > m.max_batch())
    return invalid_argument("task: batch ", batch, " outside 1..", m.max_batch(), " (--maxBatch)");
  auto check = [&](const std::vector<const RegisteredMemory*>& memory,
                   const std::vector<EngineIo>& io, const char* what) -> Status {
    if (memory.size() != io.size())
      return invalid_argument("task: ", memory.size(), " ", what, "s, the module has ", io.size());
    for (size_t i = 0; i < io.size(); ++i) {
      const size_t need = size_t(io[i].image_bytes()) * batch;
      if (!memory[i]) return invalid_argument("task: ", what, " '", io[i].name, "' is missing");
      if (memory[i]->size() < need)
        return invalid_argument("task: ", what, " '", io[i].name, "' has ", memory[i]->size(),
                                " bytes, ", io_format_name(io[i].format), " x ", batch, " needs ",
                                need);
    }
    return Status::ok();
  };
  QYOLO_RETURN_IF_ERROR(check(task.inputs, m.inputs(), "input"));
  return check(task.outputs, m.outputs(), "output");
}

}  // namespace

Status Device::run(const Task& task) {
  QYOLO_RETURN_IF_ERROR(check_task(task, *this, task.module ? &task.module->device_ : nullptr));
  return task.module->execute(task, nullptr);
}

Status Device::submit(const Task& task, void* cuda_stream) {
  QYOLO_RETURN_IF_ERROR(check_task(task, *this, task.module ? &task.module->device_ : nullptr));
  if (!impl_->backend->supports_streams())
    return unsupported("hybrid submission needs a CUDA stream; target ", target_name(target()),
                       " has none (use submit(task, wait_fences, signal_fences) or run(task))");
  if (!cuda_stream) return invalid_argument("hybrid submission: null cudaStream_t");
  return task.module->execute(task, cuda_stream);
}

Status Device::submit(const Task& task, const std::vector<FencePtr>& wait_fences,
                      const std::vector<FencePtr>& signal_fences) {
  QYOLO_RETURN_IF_ERROR(check_task(task, *this, task.module ? &task.module->device_ : nullptr));
  for (const FencePtr& f : wait_fences)
    if (!f) return invalid_argument("standalone submission: null wait fence");
  for (const FencePtr& f : signal_fences)
    if (!f) return invalid_argument("standalone submission: null signal fence");
  auto job = std::make_shared<Job>();
  job->task = task;
  job->wait = wait_fences;
  job->signal = signal_fences;
  job->remaining = int(wait_fences.size()) + 1;
  std::shared_ptr<Scheduler> scheduler = impl_->scheduler;
  {
    std::lock_guard<std::mutex> lock(scheduler->mutex);
    if (scheduler->stopping) return internal_error("the device is shutting down");
    ++scheduler->outstanding;
  }
  std::weak_ptr<Scheduler> weak = scheduler;
  auto arrive = [weak, job] {
    if (--job->remaining != 0) return;
    if (auto s = weak.lock()) {
      s->enqueue(job);
    } else {
      for (const FencePtr& f : job->signal)
        f->signal(internal_error("the device was destroyed before the task could run"));
    }
  };
  for (const FencePtr& f : wait_fences) {
    std::weak_ptr<Fence> fence = f;
    f->on_signal([job, fence, arrive] {
      if (auto locked = fence.lock()) {
        Status status = locked->wait();  // already signalled: returns at once
        std::lock_guard<std::mutex> lock(job->mutex);
        if (!status.is_ok() && job->upstream.is_ok()) job->upstream = status;
      }
      arrive();
    });
  }
  arrive();
  return Status::ok();
}

void Device::synchronize() {
  Scheduler& s = *impl_->scheduler;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.idle.wait(lock, [&] { return s.outstanding == 0; });
}

// ---------------------------------------------------------------------------------------------
Module::Module(Device& device, Engine engine, std::unique_ptr<PreparedEngine> prepared)
    : device_(device), engine_(std::move(engine)), prepared_(std::move(prepared)) {}

Module::~Module() = default;

Expected<std::unique_ptr<Module>> Module::from_engine(Device& device, Engine engine) {
  if (engine.target != device.target())
    return invalid_argument("engine built for target ", target_name(engine.target),
                            ", this device is ", target_name(device.target()));
  QYOLO_RETURN_IF_ERROR(validate_engine(engine));
  for (const EngineLayer& layer : engine.layers)
    QYOLO_RETURN_IF_ERROR(device.backend().supports_layer(engine, layer));
  std::unique_ptr<Module> module(new Module(device, std::move(engine), nullptr));
  // Prepared after the move: the prepared engine refers to the module's copy.
  QYOLO_ASSIGN_OR_RETURN(module->prepared_, device.backend().prepare(module->engine_));
  return module;
}

Expected<std::unique_ptr<Module>> Module::load(Device& device, const void* data, size_t size,
                                               const std::string& source) {
  const EngineTarget target = device.target();
  QYOLO_ASSIGN_OR_RETURN(Engine engine, deserialize_engine(data, size, source, &target));
  auto module = from_engine(device, std::move(engine));
  if (!module) return with_context(module.status(), source);
  return module;
}

Expected<std::unique_ptr<Module>> Module::load_file(Device& device, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path, ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return load(device, bytes.data(), bytes.size(), path);
}

Expected<std::vector<uint8_t>> Module::read_tensor(const std::string& name, int image) {
  for (size_t t = 0; t < engine_.tensors.size(); ++t) {
    const EngineTensor& tensor = engine_.tensors[t];
    if (tensor.name != name) continue;
    if (image < 0 || image >= engine_.max_batch)
      return invalid_argument("read_tensor '", name, "': image ", image, " out of range");
    std::vector<uint8_t> bytes(size_t(tensor.channels) * tensor.height * tensor.width *
                               element_size(tensor.type));
    std::lock_guard<std::mutex> lock(running_);
    QYOLO_RETURN_IF_ERROR(prepared_->read_tensor(int(t), image, bytes.data()));
    return bytes;
  }
  return not_found("the engine has no tensor '", name, "'");
}

Status Module::execute(const Task& task, void* stream) {
  std::lock_guard<std::mutex> lock(running_);
  ExecuteArgs args;
  args.batch = task.batch ? task.batch : engine_.max_batch;
  for (const RegisteredMemory* m : task.inputs) args.inputs.push_back(m->data());
  for (const RegisteredMemory* m : task.outputs) args.outputs.push_back(m->data());
  args.stream = stream;
  args.layer_ms = profiling_ ? &layer_ms_ : nullptr;
  return prepared_->execute(args);
}

// ---------------------------------------------------------------------------------------------
namespace {

int8_t quantize_value(float x, float scale) {
  const float q = std::nearbyint(x / scale);
  return int8_t(std::fmin(std::fmax(q, -128.0f), 127.0f));
}

int64_t io_index(const EngineIo& io, int c, int64_t p, int64_t hw) {
  switch (io.format) {
    case IoFormat::kFp32Chw:
      return c * hw + p;
    case IoFormat::kFp16Chw16:
      return ((c / 16) * hw + p) * 16 + c % 16;
    case IoFormat::kInt8Chw32:
      return ((c / 32) * hw + p) * 32 + c % 32;
    case IoFormat::kInt8Hwc4:
      return p * 4 + c;
  }
  return 0;
}

}  // namespace

void pack_input(const EngineIo& io, int batch, const float* nchw, void* buffer) {
  const int64_t hw = int64_t(io.height) * io.width, bytes = io.image_bytes();
  std::memset(buffer, 0, size_t(bytes * batch));
  for (int n = 0; n < batch; ++n) {
    uint8_t* dst = static_cast<uint8_t*>(buffer) + n * bytes;
    const float* src = nchw + int64_t(n) * io.channels * hw;
    for (int c = 0; c < io.channels; ++c)
      for (int64_t p = 0; p < hw; ++p) {
        const float x = src[c * hw + p];
        const int64_t at = io_index(io, c, p, hw);
        if (io.format == IoFormat::kFp32Chw)
          reinterpret_cast<float*>(dst)[at] = x;
        else if (io.format == IoFormat::kFp16Chw16)
          reinterpret_cast<uint16_t*>(dst)[at] = float_to_half_rne(x);
        else
          reinterpret_cast<int8_t*>(dst)[at] = quantize_value(x, io.scale);
      }
  }
}

void unpack_output(const EngineIo& io, int batch, const void* buffer, float* nchw) {
  const int64_t hw = int64_t(io.height) * io.width, bytes = io.image_bytes();
  for (int n = 0; n < batch; ++n) {
    const uint8_t* src = static_cast<const uint8_t*>(buffer) + n * bytes;
    float* dst = nchw + int64_t(n) * io.channels * hw;
    for (int c = 0; c < io.channels; ++c)
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t at = io_index(io, c, p, hw);
        float v;
        if (io.format == IoFormat::kFp32Chw)
          v = reinterpret_cast<const float*>(src)[at];
        else if (io.format == IoFormat::kFp16Chw16)
          v = half_bits_to_float(reinterpret_cast<const uint16_t*>(src)[at]);
        else
          v = float(reinterpret_cast<const int8_t*>(src)[at]) * io.scale;
        dst[c * hw + p] = v;
      }
  }
}

Status Backend::upload(void* backend_dst, const void* host_src, size_t bytes) {
  if (bytes) std::memcpy(backend_dst, host_src, bytes);
  return Status::ok();
}

Status Backend::download(void* host_dst, const void* backend_src, size_t bytes) {
  if (bytes) std::memcpy(host_dst, backend_src, bytes);
  return Status::ok();
}

}  // namespace qyolo::runtime
