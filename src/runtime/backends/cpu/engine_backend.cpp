// The CPU backend behind qyolo/runtime.h: host buffers, a prepared engine with its own arena,
// and execution layer by layer through the kernels of engine_kernels.h.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "qyolo/runtime.h"
#include "runtime/backends/cpu/engine_kernels.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace qyolo::runtime {
namespace {

class HostBuffer : public BackendBuffer {
 public:
  explicit HostBuffer(size_t bytes)
      : bytes_(bytes), data_(new (std::align_val_t(64)) uint8_t[bytes ? bytes : 1]()) {}
  ~HostBuffer() override { ::operator delete[](data_, std::align_val_t(64)); }
  void* data() override { return data_; }
  size_t size() const override { return bytes_; }

 private:
  size_t bytes_;
  uint8_t* data_;
};

class CpuPrepared : public PreparedEngine {
 public:
  CpuPrepared(const Engine& engine, std::unique_ptr<BackendBuffer> arena)
      : engine_(engine), arena_(std::move(arena)) {
    fp16_weights_.resize(engine.layers.size());
    fp16_bias_.resize(engine.layers.size());
    for (size_t i = 0; i < engine.layers.size(); ++i) {
      const EngineLayer& l = engine.layers[i];
      if (l.kind != LayerKind::kConv || l.precision != ElementType::kFloat16) continue;
      const uint16_t* w = engine.weight_data<uint16_t>(l.weights);
      const uint16_t* b = engine.weight_data<uint16_t>(l.bias);
      for (uint64_t k = 0; k < l.weights.bytes / 2; ++k)
        fp16_weights_[i].push_back(cpu_engine::half_to_float_bits(w[k]));
      for (uint64_t k = 0; k < l.bias.bytes / 2; ++k)
        fp16_bias_[i].push_back(cpu_engine::half_to_float_bits(b[k]));
    }
  }

  Status execute(const ExecuteArgs& args) override {
    cpu_engine::Context ctx;
    ctx.engine = &engine_;
    ctx.arena = static_cast<uint8_t*>(arena_->data());
    ctx.batch = args.batch;
    ctx.fp16_weights = &fp16_weights_;
    ctx.fp16_bias = &fp16_bias_;
    if (args.layer_ms) args.layer_ms->assign(engine_.layers.size(), 0.0);
    const size_t end = args.end_layer < 0 ? engine_.layers.size() : size_t(args.end_layer);
    for (size_t i = size_t(std::max(args.first_layer, 0)); i < end && i < engine_.layers.size();
         ++i) {
      const EngineLayer& l = engine_.layers[i];
      const auto start = std::chrono::steady_clock::now();
      Status status;
      switch (l.kind) {
        case LayerKind::kConv:
          status = l.precision == ElementType::kInt8 ? cpu_engine::run_conv_int8(ctx, int(i))
                                                     : cpu_engine::run_conv_fp16(ctx, int(i));
          break;
        case LayerKind::kInputReformat:
          status = cpu_engine::run_input_reformat(ctx, int(i), args.inputs[l.inputs[0]]);
          break;
        case LayerKind::kOutputReformat:
          status = cpu_engine::run_output_reformat(ctx, int(i), args.outputs[l.output]);
          break;
        default:
          status = cpu_engine::run_pointwise(ctx, int(i));
      }
      if (status.is_ok()) status = cpu_engine::apply_fused_copy(ctx, int(i));
      if (!status.is_ok()) return status;
      if (args.layer_ms)
        (*args.layer_ms)[i] =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count();
    }
    return Status::ok();
  }

  Status read_tensor(int tensor, int image, void* dst) override {
    const EngineTensor& t = engine_.tensors[tensor];
    const ArenaBuffer& b = engine_.buffers[t.buffer];
    const size_t es = element_size(t.type);
    const uint8_t* src = static_cast<const uint8_t*>(arena_->data()) + b.offset +
                         uint64_t(image) * b.bytes_per_image + size_t(t.layout.offset) * es;
    for (int64_t p = 0; p < int64_t(t.height) * t.width; ++p)
      std::memcpy(static_cast<uint8_t*>(dst) + p * t.channels * es, src + p * t.layout.stride * es,
                  t.channels * es);
    return Status::ok();
  }

  Status write_tensor(int tensor, int image, const void* src) override {
    const EngineTensor& t = engine_.tensors[tensor];
    const ArenaBuffer& b = engine_.buffers[t.buffer];
    const size_t es = element_size(t.type);
    uint8_t* dst = static_cast<uint8_t*>(arena_->data()) + b.offset +
                   uint64_t(image) * b.bytes_per_image + size_t(t.layout.offset) * es;
    for (int64_t p = 0; p < int64_t(t.height) * t.width; ++p)
      std::memcpy(dst + p * t.layout.stride * es,
                  static_cast<const uint8_t*>(src) + p * t.channels * es, t.channels * es);
    return Status::ok();
  }

 private:
  const Engine& engine_;  // owned by the Module, which outlives this
  std::unique_ptr<BackendBuffer> arena_;
  std::vector<std::vector<float>> fp16_weights_, fp16_bias_;
};

class CpuBackend : public Backend {
 public:
  EngineTarget target() const override { return EngineTarget::kCpu; }
  std::string name() const override {
#if defined(_OPENMP)
    return str_cat("cpu (", omp_get_max_threads(), " OpenMP threads)");
#else
    return "cpu (1 thread)";
#endif
  }
  // Kinds, input counts and conv precisions are validate_engine's (checked before this).
  Status supports_layer(const Engine&, const EngineLayer& layer) const override {
    if (layer.kind == LayerKind::kConv && layer.precision == ElementType::kFloat16 &&
        layer.residual >= 0)
      return unsupported("layer '", layer.name, "': the cpu backend has no fp16 residual");
    return Status::ok();
  }
  Expected<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) override {
    return std::unique_ptr<BackendBuffer>(new HostBuffer(bytes));
  }
  Status check_memory(const void* data, size_t bytes) const override {
    if (!data && bytes) return invalid_argument("null memory of ", bytes, " bytes");
    return Status::ok();
  }
  Expected<std::unique_ptr<PreparedEngine>> prepare(const Engine& engine) override {
    QYOLO_ASSIGN_OR_RETURN(auto arena, allocate(engine.arena_bytes()));
    return std::unique_ptr<PreparedEngine>(new CpuPrepared(engine, std::move(arena)));
  }
  bool supports_streams() const override { return false; }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace qyolo::runtime
