// Data-parallel fine-tuning on LibTorch's c10d: torchrun's environment, a TCPStore rendezvous
// served by rank 0, and a Gloo (CPU) or NCCL (CUDA) process group for the collectives that
// fine_tune needs: gradient averaging, broadcasts of calibration and start state, sums of
// the loss and image counts. Compiled without c10d, every multi-process request is a
// one-line error that says how to get a LibTorch with it.
#include <torch/version.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>

#include "qat/qat_internal.h"

#ifdef QYOLO_HAVE_C10D
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef QYOLO_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace qyolo {
namespace {

Expected<int> env_int(const char* name, const char* value, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || errno != 0 || parsed < lo || parsed > hi) {
    return invalid_argument(name, "='", value, "': expected a whole number from ", lo, " to ",
                            hi == INT_MAX ? std::string("up") : std::to_string(hi));
  }
  return static_cast<int>(parsed);
}

}  // namespace

Expected<DistributedEnv> distributed_env(const std::function<const char*(const char*)>& getenv) {
  DistributedEnv env;
  const char* rank = getenv("RANK");
  const char* world = getenv("WORLD_SIZE");
  if (!rank && !world) return env;
  if (!rank) return invalid_argument("WORLD_SIZE is set but RANK is not: torchrun sets both");
  if (!world) return invalid_argument("RANK is set but WORLD_SIZE is not: torchrun sets both");
  QYOLO_ASSIGN_OR_RETURN(env.world_size, env_int("WORLD_SIZE", world, 1, INT_MAX));
  QYOLO_ASSIGN_OR_RETURN(env.rank, env_int("RANK", rank, 0, env.world_size - 1));
  env.local_rank = env.rank;
  if (const char* local = getenv("LOCAL_RANK")) {
    QYOLO_ASSIGN_OR_RETURN(env.local_rank, env_int("LOCAL_RANK", local, 0, INT_MAX));
  }
  if (env.world_size == 1) return env;
  const char* addr = getenv("MASTER_ADDR");
  const char* port = getenv("MASTER_PORT");
  if (!addr || !*addr) return invalid_argument("MASTER_ADDR is not set (WORLD_SIZE=", world, ")");
  if (!port) return invalid_argument("MASTER_PORT is not set (WORLD_SIZE=", world, ")");
  env.master_addr = addr;
  QYOLO_ASSIGN_OR_RETURN(env.master_port, env_int("MASTER_PORT", port, 1, 65535));
  return env;
}

#ifdef QYOLO_HAVE_C10D

namespace {

// The first line of the message: c10d's carry a C++ backtrace or several lines of advice.
// (LibTorch 1.13's c10d::TimeoutError is a std::runtime_error, not a c10::Error.)
std::string first_line(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string message = c10_error ? c10_error->what_without_backtrace() : error.what();
  const size_t end = message.find('\n');
  return end == std::string::npos ? message : message.substr(0, end);
}

}  // namespace

// LibTorch 2 splits the collectives (Backend) from the group that routes them by device;
// in 1.13 ProcessGroupGloo is the group itself.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

struct ProcessGroup::Impl {
  int rank = 0, size = 1;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> backend;
  torch::Device device = torch::kCPU;
};

bool qat_distributed_available() { return true; }

Expected<std::unique_ptr<ProcessGroup>> ProcessGroup::create(const DistributedEnv& env,
                                                             const std::string& device,
                                                             double timeout_seconds) {
  auto impl = std::make_unique<Impl>();
  impl->rank = env.rank;
  impl->size = env.world_size;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000.0));
  const std::string where = str_cat(env.master_addr, ":", env.master_port);
  // c10d logs every failed connection attempt with a backtrace; the Status below says it once.
  // TORCH_CPP_LOG_LEVEL, when set, is the user's to choose.
  if (!std::getenv("TORCH_CPP_LOG_LEVEL"))
    FLAGS_caffe2_log_level = std::max(FLAGS_caffe2_log_level, 3);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<size_t>(env.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const std::exception& e) {
    return unsupported("rank ", env.rank, " of ", env.world_size, ": no rendezvous at ", where,
                       " within ", timeout_seconds,
                       " s (is rank 0 running, MASTER_ADDR/"
                       "MASTER_PORT right?): ",
                       first_line(e));
  }
  try {
    if (device == "cuda") {
#ifdef QYOLO_HAVE_NCCL
      impl->device = torch::Device(torch::kCUDA, env.local_rank);
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      impl->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, env.rank,
                                                                  env.world_size, options);
#else
      return unsupported(
          "--device cuda with several processes needs NCCL, which this build "
          "of qyolo has not (a CUDA LibTorch and nccl.h)");
#endif
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME picks the interface as for PyTorch; a loopback master needs no
      // resolvable host name.
      if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      options->threads = 2;
      impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank,
                                                                  env.world_size, options);
    }
  } catch (const std::exception& e) {
    return unsupported("rank ", env.rank, " of ", env.world_size,
                       ": cannot form the process "
                       "group at ",
                       where, ": ", first_line(e));
  }
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

void all_reduce_sum(ProcessGroup& group, torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors = {tensor};
  group.impl().backend->allreduce(tensors)->wait();
}

void broadcast(ProcessGroup& group, torch::Tensor& tensor, int root) {
  std::vector<torch::Tensor> tensors = {tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  group.impl().backend->broadcast(tensors, options)->wait();
}

Status ProcessGroup::broadcast(std::vector<float>& values, int root) {
  try {
    torch::Tensor t =
        torch::from_blob(values.data(), {static_cast<int64_t>(values.size())}, torch::kFloat32)
            .to(impl_->device);
    qyolo::broadcast(*this, t, root);
    t = t.cpu();
    std::copy(t.data_ptr<float>(), t.data_ptr<float>() + values.size(), values.begin());
  } catch (const std::exception& e) {
    return internal_error("rank ", impl_->rank,
                          ": broadcast: ", first_line(e));
  }
  return Status();
}

Status ProcessGroup::all_reduce_sum(std::vector<double>& values) {
  try {
    // float64 on the CPU (Gloo); NCCL takes it on the device.
    torch::Tensor t =
        torch::from_blob(values.data(), {static_cast<int64_t>(values.size())}, torch::kFloat64)
            .to(impl_->device);
    qyolo::all_reduce_sum(*this, t);
    t = t.cpu();
    std::copy(t.data_ptr<double>(), t.data_ptr<double>() + values.size(), values.begin());
  } catch (const std::exception& e) {
    return internal_error("rank ", impl_->rank,
                          ": all-reduce: ", first_line(e));
  }
  return Status();
}

#else  // no c10d

struct ProcessGroup::Impl {
  int rank = 0, size = 1;
};

bool qat_distributed_available() { return false; }

Expected<std::unique_ptr<ProcessGroup>> ProcessGroup::create(const DistributedEnv& env,
                                                             const std::string& device,
                                                             double timeout_seconds) {
  return unsupported("qyolo was built without distributed support (LibTorch ", TORCH_VERSION,
                     " without c10d and Gloo, no Gloo headers, or QYOLO_DISTRIBUTED=OFF), so qat "
                     "runs one process only: run scripts/setup.sh, which puts PyPI's LibTorch in "
                     ".deps/libtorch and installs libgloo-dev, and rebuild with scripts/build.sh");
}

void all_reduce_sum(ProcessGroup&, torch::Tensor&) {}
void broadcast(ProcessGroup&, torch::Tensor&, int) {}
Status ProcessGroup::broadcast(std::vector<float>&, int) { return Status(); }
Status ProcessGroup::all_reduce_sum(std::vector<double>&) { return Status(); }

#endif

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;
int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::size() const { return impl_->size; }

void average_gradients(ProcessGroup& group, const std::vector<torch::Tensor>& parameters) {
  // One flat buffer, one collective: a step of yolov5n is ~1.9 M floats.
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters)
    grads.push_back(p.grad().defined() ? p.grad().reshape(-1)
                                       : torch::zeros({p.numel()}, p.options()));
  torch::Tensor flat = torch::cat(grads);
  all_reduce_sum(group, flat);
  flat.div_(group.size());
  int64_t offset = 0;
  for (const auto& p : parameters) {
    torch::Tensor slice = flat.narrow(0, offset, p.numel()).view_as(p);
    if (p.grad().defined())
      p.mutable_grad().copy_(slice);
    else
      p.mutable_grad() = slice.clone();
    offset += p.numel();
  }
}

void broadcast_parameters(ProcessGroup& group, const std::vector<torch::Tensor>& parameters,
                          int root) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flats;
  for (const auto& p : parameters) flats.push_back(p.detach().reshape(-1));
  torch::Tensor flat = torch::cat(flats);
  broadcast(group, flat, root);
  int64_t offset = 0;
  for (const auto& p : parameters) {
    p.copy_(flat.narrow(0, offset, p.numel()).view_as(p));
    offset += p.numel();
  }
}

}  // namespace qyolo
