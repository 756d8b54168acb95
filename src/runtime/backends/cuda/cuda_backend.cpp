// The CUDA backend behind qyolo/runtime.h: device buffers, a prepared engine with its weights
// and arena in device memory, and execution that enqueues every layer on one stream — the
// caller's (hybrid mode) or the backend's own. The arithmetic is the CPU backend's
// (engine_conv.cpp, engine_pointwise.cpp); where the GPU may differ is in docs/runtime.md.
//
// Layers map onto kernels as follows:
//   int8 Conv            conv_int8 (qyolo/cuda_conv.h), SiLU and residual fused, the residual
//                        rounded at the conv's own scale first where the engine says so
//                        (EngineLayer::conv_scale, the epilogue's conv_scale); a table after
//                        the conv goes through a scratch tensor and a second element-wise pass;
//                        a fused Concat copy (EngineLayer::requant_from / also_output) as the
//                        requantizing copy kernel after the conv (in place, or into the slice)
//   int8 MaxPool, Resize the 16-channel kernels of qyolo/cuda_ops.h, a fused Concat copy as
//                        their FusedCopyInt8
//   fp16 Conv            conv_fp16 (qyolo/cuda_ops.h), weights repacked at load
//   everything else      engine_layer / engine_*_reformat (kernels/cuda/engine_layers.h)
#include "qyolo/runtime.h"

#if defined(QYOLO_WITH_CUDA)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "kernels/cuda/ops/engine_layers.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_conv.h"
#include "qyolo/cuda_ops.h"
#endif

namespace qyolo::runtime {

#if defined(QYOLO_WITH_CUDA)
namespace {

using qyolo::cuda::check;
using qyolo::cuda::DeviceBuffer;

class CudaBuffer : public BackendBuffer {
 public:
  explicit CudaBuffer(DeviceBuffer buffer) : buffer_(std::move(buffer)) {}
  void* data() override { return buffer_.data(); }
  size_t size() const override { return buffer_.size(); }

 private:
  DeviceBuffer buffer_;
};

// Makes `device` the calling thread's current GPU. cudaSetDevice only when it is not (so a
// call inside a stream capture, or on one GPU, touches nothing but cudaGetDevice).
Status use_device(int device) {
  int current = -1;
  QYOLO_RETURN_IF_ERROR(check(cudaGetDevice(&current), "cudaGetDevice"));
  return current == device ? Status::ok() : check(cudaSetDevice(device), "cudaSetDevice");
}

// A tensor is batch-contiguous when image n starts right after image n - 1 (its buffer holds
// no padding between images): then one launch covers the batch.
bool batch_contiguous(const Engine& e, const EngineTensor& t) {
  return e.buffers[t.buffer].bytes_per_image == uint64_t(t.image_bytes());
}

constexpr int kOverlapMaxBatch = 32;  // launches overlap below this batch (execute)

class CudaPrepared : public PreparedEngine {
 public:
  // `device`: the GPU (current when this is called); every call makes it current again, so
  // any host thread can run the engine (a worker of the runtime's Device, val's and bench's
  // per-device threads).
  static Expected<std::unique_ptr<PreparedEngine>> create(const Engine& engine, int device) {
    std::unique_ptr<CudaPrepared> p(new CudaPrepared(engine));
    p->device_ = device;
    QYOLO_RETURN_IF_ERROR(p->init());
    return std::unique_ptr<PreparedEngine>(std::move(p));
  }

  Status execute(const ExecuteArgs& args) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    if (args.batch < 1 || args.batch > engine_.max_batch)
      return invalid_argument("batch ", args.batch, " outside 1..", engine_.max_batch);
    cudaStream_t stream = args.stream ? static_cast<cudaStream_t>(args.stream) : own_.get();
    const bool timing = args.layer_ms != nullptr;
    if (timing) args.layer_ms->assign(engine_.layers.size(), 0.0);
    if (timing && events_.size() < engine_.layers.size() + 1) {
      events_.clear();
      for (size_t i = 0; i <= engine_.layers.size(); ++i) {
        QYOLO_ASSIGN_OR_RETURN(auto event, cuda::Event::create());
        events_.push_back(std::move(event));
      }
    }
    const size_t end = args.end_layer < 0 ? engine_.layers.size() : size_t(args.end_layer);
    const size_t first = size_t(std::max(args.first_layer, 0));
    // Overlapped launches pay below batch 32 (yolov5s on an H200, plain / overlapped: batch 1
    // 0.471 / 0.460 ms, yolov5n 0.413 / 0.384; batch 32 even; batch 64 1.2% slower). A
    // caller's own LaunchOverlapScope on this thread wins.
    std::optional<qyolo::cuda::LaunchOverlapScope> overlap;
    if (!qyolo::cuda::launch_overlap_set()) overlap.emplace(args.batch < kOverlapMaxBatch);
    for (size_t i = first; i < end && i < engine_.layers.size(); ++i) {
      if (timing) QYOLO_RETURN_IF_ERROR(events_[i].record(stream));
      if (skipped(int(i), args)) continue;  // find_direct_outputs / find_direct_inputs
      QYOLO_RETURN_IF_ERROR(
          with_context(run_layer(int(i), args, stream), "layer '" + engine_.layers[i].name + "'"));
    }
    if (timing && first < end) {
      const size_t last = std::min(end, engine_.layers.size());
      QYOLO_RETURN_IF_ERROR(events_[last].record(stream));
      QYOLO_RETURN_IF_ERROR(events_[last].synchronize());
      for (size_t i = first; i < last; ++i) {
        QYOLO_ASSIGN_OR_RETURN(float ms, cuda::Event::elapsed_ms(events_[i], events_[i + 1]));
        (*args.layer_ms)[i] = ms;
      }
    }
    // The backend's own stream: the call returns when the work is done, as on the CPU.
    if (!args.stream) return check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return Status::ok();
  }

  Status read_tensor(int tensor, int image, void* dst) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    const EngineTensor& t = engine_.tensors[tensor];
    const size_t es = element_size(t.type);
    const void* src = at(t, image);
    QYOLO_RETURN_IF_ERROR(check(cudaStreamSynchronize(own_.get()), "cudaStreamSynchronize"));
    return check(cudaMemcpy2D(dst, t.channels * es, src, t.layout.stride * es, t.channels * es,
                              size_t(t.height) * t.width, cudaMemcpyDeviceToHost),
                 "read_tensor cudaMemcpy2D");
  }

  Status write_tensor(int tensor, int image, const void* src) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    const EngineTensor& t = engine_.tensors[tensor];
    const size_t es = element_size(t.type);
    void* dst = at(t, image);
    // On the engine's own stream, complete on return: cudaMemcpy2D on the legacy stream may
    // return before a copy from pageable memory lands, and nothing orders the engine's
    // non-blocking stream after it (a layer then read part of the old tensor).
    QYOLO_RETURN_IF_ERROR(check(cudaMemcpy2DAsync(dst, t.layout.stride * es, src, t.channels * es,
                                                  t.channels * es, size_t(t.height) * t.width,
                                                  cudaMemcpyHostToDevice, own_.get()),
                                "write_tensor cudaMemcpy2DAsync"));
    return check(cudaStreamSynchronize(own_.get()), "cudaStreamSynchronize");
  }

 private:
  // QYOLO_CUDA_GENERIC_LAYERS=1 runs every data-movement layer through the generic kernel
  // (engine_layers.h), to compare it with the specialised int8 kernels (but those with a fused
  // Concat copy, which only the int8 kernels do).
  explicit CudaPrepared(const Engine& engine)
      : engine_(engine), generic_only_(std::getenv("QYOLO_CUDA_GENERIC_LAYERS") != nullptr) {}

  Status init() {
    QYOLO_ASSIGN_OR_RETURN(own_, cuda::Stream::create());
    QYOLO_ASSIGN_OR_RETURN(weights_, DeviceBuffer::allocate(std::max<size_t>(engine_.weights.size(), 64)));
    QYOLO_RETURN_IF_ERROR(weights_.upload(engine_.weights.data(), engine_.weights.size()));
    QYOLO_ASSIGN_OR_RETURN(arena_, DeviceBuffer::allocate(std::max<uint64_t>(engine_.arena_bytes(), 64)));
    // Deterministic padding bytes: every run sees the same arena.
    QYOLO_RETURN_IF_ERROR(arena_.fill(0));
    layers_.resize(engine_.layers.size());
    size_t scratch = 0;
    for (size_t i = 0; i < engine_.layers.size(); ++i) {
      const EngineLayer& l = engine_.layers[i];
      if (l.kind != LayerKind::kConv) continue;
      if (l.precision == ElementType::kInt8 && needs_scratch(l))
        scratch = std::max(scratch, size_t(round_up(l.shape.out_channels, 16)) *
                                        l.shape.out_h() * l.shape.out_w() * engine_.max_batch);
      if (l.precision != ElementType::kFloat16) continue;
      // Engine fp16 weights are [in][kh][kw][out] half; conv_fp16 wants its packed rows.
      const ConvInt8Shape& s = l.shape;
      const uint16_t* w = engine_.weight_data<uint16_t>(l.weights);
      const uint16_t* b = engine_.weight_data<uint16_t>(l.bias);
      std::vector<float> ohwi(size_t(s.out_channels) * s.kernel * s.kernel * s.in_channels);
      for (int c = 0; c < s.in_channels; ++c)
        for (int r = 0; r < s.kernel; ++r)
          for (int q = 0; q < s.kernel; ++q)
            for (int o = 0; o < s.out_channels; ++o)
              ohwi[((size_t(o) * s.kernel + r) * s.kernel + q) * s.in_channels + c] =
                  half_bits_to_float(w[((size_t(c) * s.kernel + r) * s.kernel + q) * s.out_channels + o]);
      const std::vector<uint16_t> packed = cuda::pack_conv_fp16_weights(s, ohwi.data());
      std::vector<float> bias(size_t(s.out_channels), 0.0f);
      for (int o = 0; b && o < s.out_channels; ++o) bias[o] = half_bits_to_float(b[o]);
      QYOLO_ASSIGN_OR_RETURN(layers_[i].fp16_weights, DeviceBuffer::allocate(packed.size() * 2));
      QYOLO_RETURN_IF_ERROR(layers_[i].fp16_weights.upload(packed.data(), packed.size() * 2));
      QYOLO_ASSIGN_OR_RETURN(layers_[i].fp16_bias, DeviceBuffer::allocate(bias.size() * 4));
      QYOLO_RETURN_IF_ERROR(layers_[i].fp16_bias.upload(bias.data(), bias.size() * 4));
    }
    if (scratch) {
      QYOLO_ASSIGN_OR_RETURN(scratch_, DeviceBuffer::allocate(scratch));
    }
    // Split K's counters and partials for the small int8 convs (batch 1's deep layers), zeroed
    // once: every launch leaves them zeroed (qyolo/cuda_conv.h). None without an int8 conv.
    const bool int8_convs =
        std::any_of(engine_.layers.begin(), engine_.layers.end(), [](const EngineLayer& l) {
          return l.kind == LayerKind::kConv && l.precision == ElementType::kInt8;
        });
    if (int8_convs) {
      QYOLO_ASSIGN_OR_RETURN(split_workspace_,
                             DeviceBuffer::allocate(cuda::conv_int8_split_workspace_bytes()));
      QYOLO_RETURN_IF_ERROR(split_workspace_.fill(0));
    }
    find_direct_outputs();
    find_direct_inputs();
    return Status::ok();
  }

  // QYOLO_CUDA_DIRECT_OUTPUTS=0 keeps every I/O reformat (find_direct_outputs / _inputs).
  static bool direct_io_enabled() {
    const char* env = std::getenv("QYOLO_CUDA_DIRECT_OUTPUTS");
    return !(env && std::strcmp(env, "0") == 0);
  }
  // An int8 conv whose output only an int8:chw32 output reformat reads, at the same scale (a
  // copy), writes the engine output itself in that layout (conv_int8's output_block) and the
  // reformat is skipped: in a whole-network run only, since per-layer runs read the tensor.
  // QYOLO_CUDA_DIRECT_OUTPUTS=0 keeps the reformats.
  void find_direct_outputs() {
    direct_output_.assign(engine_.layers.size(), -1);
    replaced_.assign(engine_.layers.size(), 0);
    if (!direct_io_enabled()) return;
    std::vector<int> readers(engine_.tensors.size(), 0);
    for (const EngineLayer& l : engine_.layers) {
      if (l.kind == LayerKind::kInputReformat) continue;
      for (int t : l.inputs) ++readers[t];
      if (l.residual >= 0) ++readers[l.residual];
    }
    std::vector<int> producer(engine_.tensors.size(), -1);
    for (size_t i = 0; i < engine_.layers.size(); ++i)
      if (engine_.layers[i].kind != LayerKind::kOutputReformat && engine_.layers[i].output >= 0)
        producer[engine_.layers[i].output] = int(i);
    for (size_t r = 0; r < engine_.layers.size(); ++r) {
      const EngineLayer& reformat = engine_.layers[r];
      if (reformat.kind != LayerKind::kOutputReformat) continue;
      const EngineIo& io = engine_.outputs[reformat.output];
      const int t = reformat.inputs[0];
      const int c = producer[t];
      if (c < 0 || int(r) < c || readers[t] != 1) continue;
      const EngineLayer& conv = engine_.layers[c];
      const EngineTensor& tensor = engine_.tensors[t];
      if (conv.kind != LayerKind::kConv || conv.precision != ElementType::kInt8 ||
          needs_scratch(conv) || io.format != IoFormat::kInt8Chw32 ||
          tensor.type != ElementType::kInt8 || tensor.scale != io.scale ||
          round_up(io.channels, 16) != round_up(io.channels, 32))
        continue;
      direct_output_[c] = int(r);
      replaced_[r] = 1;
    }
  }
  // An int8:hwc4 input whose tensor has the same layout and scale (the input reformat a plain
  // copy) and which only int8 convs read (the stem): those convs read the caller's input
  // buffer itself and the copy is skipped, in a whole-network run only (as the direct outputs).
  void find_direct_inputs() {
    direct_input_.assign(engine_.tensors.size(), -1);
    if (!direct_io_enabled()) return;
    for (size_t r = 0; r < engine_.layers.size(); ++r) {
      const EngineLayer& reformat = engine_.layers[r];
      if (reformat.kind != LayerKind::kInputReformat || reformat.output < 0) continue;
      const EngineIo& io = engine_.inputs[reformat.inputs[0]];
      const int t = reformat.output;
      const EngineTensor& tensor = engine_.tensors[t];
      if (!plain_input_copy(io, tensor)) continue;
      bool convs_only = true;
      for (const EngineLayer& l : engine_.layers) {
        if (l.kind == LayerKind::kInputReformat) continue;
        const bool reads = l.residual == t ||
                           std::find(l.inputs.begin(), l.inputs.end(), t) != l.inputs.end();
        if (reads && (l.kind != LayerKind::kConv || l.precision != ElementType::kInt8 ||
                      l.residual == t || l.inputs.size() != 1))
          convs_only = false;
      }
      if (!convs_only) continue;
      direct_input_[t] = reformat.inputs[0];
      replaced_[r] = 1;
    }
  }
  // int8:hwc4 into a tensor of the same layout and scale is a plain copy.
  bool plain_input_copy(const EngineIo& io, const EngineTensor& t) const {
    return io.format == IoFormat::kInt8Hwc4 && t.type == ElementType::kInt8 &&
           t.layout.stride == 4 && t.layout.offset == 0 && t.scale == io.scale &&
           batch_contiguous(engine_, t);
  }
  bool skipped(int layer, const ExecuteArgs& args) const {
    if (!replaced_[layer] || !whole_run(args)) return false;
    const EngineLayer& l = engine_.layers[layer];
    return l.kind != LayerKind::kInputReformat || direct_input(l.output, args) >= 0;
  }
  // The engine input the convs reading tensor t take in place of it in this run, or -1: whole
  // runs only, and a buffer aligned as the arena's (the kernels' vector and TMA reads).
  int direct_input(int t, const ExecuteArgs& args) const {
    const int io = t >= 0 && whole_run(args) ? direct_input_[t] : -1;
    if (io < 0 || reinterpret_cast<uintptr_t>(args.inputs[io]) % 256 != 0) return -1;
    return io;
  }
  bool whole_run(const ExecuteArgs& args) const {
    return args.first_layer <= 0 && (args.end_layer < 0 || size_t(args.end_layer) >= engine_.layers.size());
  }

  // A Conv whose output goes through a table (Conv + Sigmoid at the conv's own scale) runs into
  // a scratch tensor, then the table pass; the residual Add rounds in the epilogue (conv_scale).
  static bool needs_scratch(const EngineLayer& l) { return l.table.bytes > 0; }

  // Image n of tensor t at channel 0 of its buffer's row: what the kernels of cuda_conv.h and
  // cuda_ops.h take, with the slice's offset in their ChannelSlice.
  void* image_base(const EngineTensor& t, int n) const {
    const ArenaBuffer& b = engine_.buffers[t.buffer];
    return arena_.as<uint8_t>() + b.offset + uint64_t(n) * b.bytes_per_image;
  }
  // Image n of tensor t at its first channel.
  void* at(const EngineTensor& t, int n) const {
    return static_cast<uint8_t*>(image_base(t, n)) + size_t(t.layout.offset) * element_size(t.type);
  }
  cuda::ElementView view(const EngineTensor& t, int n) const {
    cuda::ElementView v;
    v.data = at(t, n);
    v.type = int(t.type);
    v.stride = t.layout.stride;
    v.image_elements = int64_t(engine_.buffers[t.buffer].bytes_per_image / element_size(t.type));
    v.scale = t.scale;
    return v;
  }
  const void* weight(const WeightRange& r) const {
    return r.bytes ? weights_.as<uint8_t>() + r.offset : nullptr;
  }

  // Runs `body(first_image, count)` once for the whole batch when every tensor involved is
  // batch-contiguous, else once per image.
  template <typename Body>
  Status per_batch(std::initializer_list<const EngineTensor*> tensors, int batch, Body body) {
    bool contiguous = true;
    for (const EngineTensor* t : tensors)
      if (t && !batch_contiguous(engine_, *t)) contiguous = false;
    if (contiguous) return body(0, batch);
    for (int n = 0; n < batch; ++n) QYOLO_RETURN_IF_ERROR(body(n, 1));
    return Status::ok();
  }

  Status run_layer(int index, const ExecuteArgs& args, cudaStream_t stream) {
    const EngineLayer& l = engine_.layers[index];
    switch (l.kind) {
      case LayerKind::kInputReformat:
        return input_reformat(l, args, stream);
      case LayerKind::kOutputReformat:
        return output_reformat(l, args, stream);
      case LayerKind::kConv:
        return l.precision == ElementType::kInt8 ? conv_int8(index, args, stream)
                                                 : conv_fp16(index, args.batch, stream);
      default:
        return pointwise(l, args.batch, stream);
    }
  }

  Status conv_int8(int index, const ExecuteArgs& args, cudaStream_t stream) {
    const int batch = args.batch;
    const EngineLayer& l = engine_.layers[index];
    // The engine output in int8:chw32, written here instead of by its reformat.
    const int direct = whole_run(args) ? direct_output_[index] : -1;
    void* direct_dst = direct >= 0 ? args.outputs[engine_.layers[direct].output] : nullptr;
    const uint64_t direct_image =
        direct >= 0 ? uint64_t(engine_.outputs[engine_.layers[direct].output].image_bytes()) : 0;
    const EngineTensor& in = engine_.tensors[l.inputs[0]];
    const EngineTensor& out = engine_.tensors[l.output];
    const EngineTensor* res = l.residual >= 0 ? &engine_.tensors[l.residual] : nullptr;
    const EngineTensor* also = l.also_output >= 0 ? &engine_.tensors[l.also_output] : nullptr;
    const bool scratch = needs_scratch(l);
    const int scratch_stride = round_up(l.shape.out_channels, 16);
    const int64_t scratch_image = int64_t(scratch_stride) * l.shape.out_h() * l.shape.out_w();
    return per_batch({&in, &out, res, also}, batch, [&](int n, int count) -> Status {
      qyolo::cuda::ConvInt8Args a;
      a.shape = l.shape;
      a.shape.batch = count;
      a.input = static_cast<const int8_t*>(image_base(in, n));
      if (const int io = direct_input(l.inputs[0], args); io >= 0)
        a.input = static_cast<const int8_t*>(args.inputs[io]) + n * engine_.inputs[io].image_bytes();
      a.input_layout = in.layout;
      a.weights = static_cast<const int8_t*>(weight(l.weights));
      a.epilogue.input_scale = in.scale;
      a.epilogue.weight_scales = static_cast<const float*>(weight(l.weight_scales));
      a.epilogue.bias = static_cast<const float*>(weight(l.bias));
      a.epilogue.silu = l.activation == Activation::kSilu;
      a.epilogue.output = out.type == ElementType::kFloat16 ? ConvOutput::kFloat16 : ConvOutput::kInt8;
      a.epilogue.output_scale = layer_round_scale(engine_, l);
      a.output = image_base(out, n);
      a.output_layout = out.layout;
      if (direct_dst) {
        a.output = static_cast<uint8_t*>(direct_dst) + n * direct_image;
        a.output_block = 32;
      }
      if (res && !scratch) {  // the residual Add in the epilogue
        a.epilogue.residual = static_cast<const int8_t*>(image_base(*res, n));
        a.epilogue.residual_layout = res->layout;
        a.epilogue.residual_scale = res->scale;
      }
      // Rounded at the conv's own scale first: the residual Add's, or a Concat's requantizing
      // copy (the reference's separate layers).
      if (!scratch) a.epilogue.conv_scale = l.conv_scale;
      if (scratch) {  // round at conv_scale into scratch, then the table
        a.output = scratch_.data();
        a.output_layout = {scratch_stride, 0};
        a.epilogue.output = ConvOutput::kInt8;
        a.epilogue.output_scale = l.conv_scale;
      }
      a.workspace = split_workspace_.data();
      a.workspace_bytes = split_workspace_.size();
      QYOLO_RETURN_IF_ERROR(qyolo::cuda::conv_int8(a, stream));
      if (l.has_fused_copy()) {
        if (direct_dst)
          return internal_error("layer '", l.name, "': a fused copy and a direct output");
        // The Concat's copy after the conv, as the requantizing copy kernel: in place in the
        // slice (rounded at requant_from by the epilogue) or from the own tensor into
        // also_output. An epilogue variant that mapped each result through a 256-entry table
        // (read through the L1 cache) measured slower on an H200: yolov5s at batch 64 4.254
        // against 4.129 ms with the copies, batch 32 2.401 against 2.291 (docs/cuda_kernels.md).
        const FusedCopy copy = fused_copy(engine_, l);
        const EngineTensor& dst = engine_.tensors[copy.target];
        qyolo::cuda::RequantizeInt8Args r;
        r.shape = {count, out.height, out.width, out.channels};
        r.x = static_cast<const int8_t*>(image_base(out, n));
        r.x_layout = out.layout;
        r.input_scale = copy.from;
        r.y = static_cast<int8_t*>(image_base(dst, n));
        r.y_layout = dst.layout;
        r.output_scale = copy.to;
        return qyolo::cuda::requantize_int8(r, stream);
      }
      if (!scratch) return Status::ok();
      qyolo::cuda::EngineLayerArgs e;
      e.batch = count;
      e.height = out.height;
      e.width = out.width;
      e.channels = out.channels;
      e.x.data = scratch_.data();
      e.x.type = 1;
      e.x.stride = scratch_stride;
      e.x.image_elements = scratch_image;
      e.x.scale = l.conv_scale;
      e.y = view(out, n);
      e.op = qyolo::cuda::EngineLayerOp::kTable;
      e.table = static_cast<const int8_t*>(weight(l.table));
      return qyolo::cuda::engine_layer(e, stream);
    });
  }

  Status conv_fp16(int index, int batch, cudaStream_t stream) {
    const EngineLayer& l = engine_.layers[index];
    const EngineTensor& in = engine_.tensors[l.inputs[0]];
    const EngineTensor& out = engine_.tensors[l.output];
    return per_batch({&in, &out}, batch, [&](int n, int count) -> Status {
      qyolo::cuda::ConvFp16Args a;
      a.shape = l.shape;
      a.shape.batch = count;
      a.x = static_cast<const uint16_t*>(image_base(in, n));
      a.x_layout = in.layout;
      a.weights = layers_[index].fp16_weights.as<uint16_t>();
      a.bias = layers_[index].fp16_bias.as<float>();
      a.silu = l.activation == Activation::kSilu;
      a.output = out.type == ElementType::kInt8 ? ConvOutput::kInt8 : ConvOutput::kFloat16;
      a.output_scale = out.scale;
      a.y = image_base(out, n);
      a.y_layout = out.layout;
      return qyolo::cuda::conv_fp16(a, stream);
    });
  }

  // The int8 -> int8 data movement of qyolo/cuda_ops.h (16 channels a thread where the slices
  // allow): MaxPool, Resize, Requantize and tables. Unavailable (false) for other types, a
  // batch that is not contiguous, and under QYOLO_CUDA_GENERIC_LAYERS; the generic kernel then
  // runs. A layer with a fused Concat copy always runs here (the generic kernel has none),
  // image by image where a batch is not contiguous.
  bool int8_fast_path(const EngineLayer& l, int batch, cudaStream_t stream, Status& status) {
    const EngineTensor& in = engine_.tensors[l.inputs[0]];
    const EngineTensor& out = engine_.tensors[l.output];
    const EngineTensor* also = l.also_output >= 0 ? &engine_.tensors[l.also_output] : nullptr;
    if (in.type != ElementType::kInt8 || out.type != ElementType::kInt8 || l.inputs.size() != 1)
      return false;
    const bool fused = l.has_fused_copy();
    if (generic_only_ && !fused) return false;
    const bool contiguous = batch_contiguous(engine_, in) && batch_contiguous(engine_, out) &&
                            (!also || batch_contiguous(engine_, *also));
    if (contiguous) return int8_images(l, 0, batch, stream, status);
    if (!fused) return false;
    for (int n = 0; n < batch; ++n) {
      if (!int8_images(l, n, 1, stream, status)) return false;
      if (!status.is_ok()) return true;
    }
    return true;
  }

  // Images n .. n + count - 1 of an int8 data-movement layer (int8_fast_path).
  bool int8_images(const EngineLayer& l, int n, int count, cudaStream_t stream, Status& status) {
    const EngineTensor& in = engine_.tensors[l.inputs[0]];
    const EngineTensor& out = engine_.tensors[l.output];
    const EngineTensor* also = l.also_output >= 0 ? &engine_.tensors[l.also_output] : nullptr;
    const qyolo::cuda::NhwcShape input{count, in.height, in.width, out.channels};
    const qyolo::cuda::NhwcShape output{count, out.height, out.width, out.channels};
    auto* x = static_cast<const int8_t*>(image_base(in, n));
    auto* y = static_cast<int8_t*>(image_base(out, n));
    // A Concat's copy done here (EngineLayer::requant_from / also_output).
    qyolo::cuda::FusedCopyInt8 copy;
    copy.mid_scale = l.requant_from;
    if (also) {
      copy.y2 = static_cast<int8_t*>(image_base(*also, n));
      copy.y2_layout = also->layout;
      copy.y2_scale = also->scale;
    }
    switch (l.kind) {
      case LayerKind::kMaxPool: {
        qyolo::cuda::MaxPoolInt8Args a;
        a.input = input;
        a.kernel = l.kernel, a.stride = l.stride, a.pad = l.pad;
        a.x = x, a.x_layout = in.layout, a.y = y, a.y_layout = out.layout;
        a.input_scale = in.scale, a.output_scale = out.scale;
        a.copy = copy;
        status = qyolo::cuda::maxpool_int8(a, stream);
        return true;
      }
      case LayerKind::kResizeNearest: {
        qyolo::cuda::ResizeNearestInt8Args a;
        a.input = input;
        a.factor = l.factor;
        a.x = x, a.x_layout = in.layout, a.y = y, a.y_layout = out.layout;
        a.input_scale = in.scale, a.output_scale = out.scale;
        a.copy = copy;
        status = qyolo::cuda::resize_nearest_int8(a, stream);
        return true;
      }
      case LayerKind::kConvert: {
        qyolo::cuda::RequantizeInt8Args a;
        a.shape = output;
        a.x = x, a.x_layout = in.layout, a.y = y, a.y_layout = out.layout;
        a.input_scale = in.scale, a.output_scale = out.scale;
        status = qyolo::cuda::requantize_int8(a, stream);
        return true;
      }
      case LayerKind::kSigmoid: {
        if (!l.table.bytes) return false;
        qyolo::cuda::LookupInt8Args a;
        a.shape = output;
        a.x = x, a.x_layout = in.layout, a.y = y, a.y_layout = out.layout;
        std::memcpy(a.table.values, engine_.weight_data<int8_t>(l.table), 256);
        status = qyolo::cuda::lookup_int8(a, stream);
        return true;
      }
      default:
        return false;
    }
  }

  Status pointwise(const EngineLayer& l, int batch, cudaStream_t stream) {
    const EngineTensor& in = engine_.tensors[l.inputs[0]];
    const EngineTensor& out = engine_.tensors[l.output];
    const EngineTensor* in2 = l.inputs.size() > 1 ? &engine_.tensors[l.inputs[1]] : nullptr;
    Status fast;
    if (int8_fast_path(l, batch, stream, fast)) return fast;
    if (l.has_fused_copy())
      return internal_error("layer '", l.name, "': a fused Concat copy on a ", l.op, " layer");
    qyolo::cuda::EngineLayerArgs e;
    switch (l.kind) {
      case LayerKind::kMaxPool:
        e.op = qyolo::cuda::EngineLayerOp::kMaxPool;
        break;
      case LayerKind::kResizeNearest:
        e.op = qyolo::cuda::EngineLayerOp::kResizeNearest;
        break;
      case LayerKind::kConvert:
        e.op = qyolo::cuda::EngineLayerOp::kConvert;
        break;
      case LayerKind::kAdd:
        e.op = qyolo::cuda::EngineLayerOp::kAdd;
        break;
      case LayerKind::kMul:
        e.op = qyolo::cuda::EngineLayerOp::kMul;
        break;
      case LayerKind::kSigmoid:
        e.op = l.table.bytes ? qyolo::cuda::EngineLayerOp::kTable
                             : qyolo::cuda::EngineLayerOp::kSigmoid;
        e.table = static_cast<const int8_t*>(weight(l.table));
        break;
      default:
        return internal_error("not a pointwise layer");
    }
    // Image 0's views carry image_elements, so one launch covers the whole batch whatever the
    // buffers' padding between images.
    e.batch = batch;
    e.height = out.height;
    e.width = out.width;
    e.channels = out.channels;
    e.in_height = in.height;
    e.in_width = in.width;
    e.kernel = l.kernel;
    e.stride = l.stride;
    e.pad = l.pad;
    e.factor = l.factor;
    e.x = view(in, 0);
    if (in2) e.x2 = view(*in2, 0);
    e.y = view(out, 0);
    return qyolo::cuda::engine_layer(e, stream);
  }

  Status input_reformat(const EngineLayer& l, const ExecuteArgs& args, cudaStream_t stream) {
    const EngineIo& io = engine_.inputs[l.inputs[0]];
    const EngineTensor& t = engine_.tensors[l.output];
    qyolo::cuda::InputReformatArgs a;
    a.format = int(io.format);
    a.batch = args.batch;
    a.height = io.height;
    a.width = io.width;
    a.channels = io.channels;
    a.src = args.inputs[l.inputs[0]];
    a.src_image_bytes = io.image_bytes();
    a.src_scale = io.scale;
    a.y = view(t, 0);
    a.zero_padding = t.layout.offset == 0;
    if (plain_input_copy(io, t))
      return check(cudaMemcpyAsync(at(t, 0), a.src, size_t(io.image_bytes()) * args.batch,
                                   cudaMemcpyDeviceToDevice, stream),
                   "input cudaMemcpyAsync");
    return qyolo::cuda::engine_input_reformat(a, stream);
  }

  Status output_reformat(const EngineLayer& l, const ExecuteArgs& args, cudaStream_t stream) {
    const EngineIo& io = engine_.outputs[l.output];
    qyolo::cuda::OutputReformatArgs a;
    a.format = int(io.format);
    a.batch = args.batch;
    a.height = io.height;
    a.width = io.width;
    a.channels = io.channels;
    a.x = view(engine_.tensors[l.inputs[0]], 0);
    a.dst = args.outputs[l.output];
    a.dst_image_bytes = io.image_bytes();
    a.dst_scale = io.scale;
    // The usual case, the head's own values into a blocked format (int8 at the output's scale,
    // or half): the vectorised block copy of cuda_ops' reformat.
    const EngineTensor& t = engine_.tensors[l.inputs[0]];
    const bool int8_copy = io.format == IoFormat::kInt8Chw32 && t.type == ElementType::kInt8 &&
                           t.scale == io.scale;
    const bool half_copy = io.format == IoFormat::kFp16Chw16 && t.type == ElementType::kFloat16;
    if ((int8_copy || half_copy) && batch_contiguous(engine_, t)) {
      qyolo::cuda::ReformatArgs r;
      r.shape = {args.batch, io.height, io.width, io.channels};
      r.input_type =
          int8_copy ? qyolo::cuda::ReformatInput::kInt8 : qyolo::cuda::ReformatInput::kFloat16;
      r.x = a.x.data;
      r.x_layout = {a.x.stride, 0};
      r.input_scale = int8_copy ? t.scale : 1.0f;
      r.output_format = int8_copy ? qyolo::cuda::ReformatOutput::kInt8Chw32
                                  : qyolo::cuda::ReformatOutput::kFloat16Chw16;
      r.y = a.dst;
      return qyolo::cuda::reformat(r, stream);
    }
    return qyolo::cuda::engine_output_reformat(a, stream);
  }

  struct LayerState {
    DeviceBuffer fp16_weights, fp16_bias;
  };

  const Engine& engine_;  // owned by the Module, which outlives this
  int device_ = 0;
  bool generic_only_ = false;
  cuda::Stream own_;
  DeviceBuffer weights_, arena_, scratch_, split_workspace_;
  std::vector<LayerState> layers_;
  std::vector<cuda::Event> events_;
  std::vector<int> direct_output_;    // per layer: the output reformat its conv replaces, or -1
  std::vector<char> replaced_;        // per layer: a reformat the convs make unnecessary
  std::vector<int> direct_input_;     // per tensor: the engine input its convs read instead, or -1
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int device, std::string description)
      : device_(device), description_(std::move(description)) {}
  EngineTarget target() const override { return EngineTarget::kCuda; }
  std::string name() const override { return "cuda: " + description_; }

  // Kinds, input counts and conv precisions are validate_engine's (checked before this).
  Status supports_layer(const Engine&, const EngineLayer& layer) const override {
    if (layer.kind != LayerKind::kConv) return Status::ok();
    if (layer.precision == ElementType::kFloat16) {
      if (layer.residual >= 0)
        return unsupported("layer '", layer.name, "': fp16 convolution with a residual");
      if (layer.activation == Activation::kSigmoid)
        return unsupported("layer '", layer.name, "': fp16 convolution with a Sigmoid");
    } else if (layer.activation == Activation::kSigmoid && !layer.table.bytes) {
      return unsupported("layer '", layer.name, "': int8 Sigmoid without its table");
    }
    return Status::ok();
  }

  Expected<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    QYOLO_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::allocate(bytes));
    return std::unique_ptr<BackendBuffer>(new CudaBuffer(std::move(buffer)));
  }

  Status check_memory(const void* data, size_t bytes) const override {
    if (!data) return bytes ? invalid_argument("null memory of ", bytes, " bytes") : Status::ok();
    cudaPointerAttributes attributes{};
    QYOLO_RETURN_IF_ERROR(check(cudaPointerGetAttributes(&attributes, data),
                                "cudaPointerGetAttributes"));
    if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged)
      return invalid_argument("memory at ", data, " is not device memory (target cuda)");
    return Status::ok();
  }

  Expected<std::unique_ptr<PreparedEngine>> prepare(const Engine& engine) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    return CudaPrepared::create(engine, device_);
  }
  bool supports_streams() const override { return true; }
  Status upload(void* backend_dst, const void* host_src, size_t bytes) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    return cuda::copy_to_device(backend_dst, host_src, bytes);
  }
  Status download(void* host_dst, const void* backend_src, size_t bytes) override {
    QYOLO_RETURN_IF_ERROR(use_device(device_));
    return check(cudaMemcpy(host_dst, backend_src, bytes, cudaMemcpyDeviceToHost), "download");
  }

 private:
  int device_;
  std::string description_;
};

}  // namespace
#endif

int device_count(EngineTarget target) {
  if (target == EngineTarget::kCpu) return 1;
#if defined(QYOLO_WITH_CUDA)
  if (target == EngineTarget::kCuda) return cuda::device_count();
#endif
  return 0;
}

Expected<std::unique_ptr<Backend>> make_cuda_backend(int device) {
#if defined(QYOLO_WITH_CUDA)
  const int count = cuda::device_count();
  if (count == 0) return unsupported("target cuda: no CUDA GPU is present");
  if (device < 0 || device >= count)
    return invalid_argument("target cuda: GPU ", device, " does not exist (", count, " present)");
  QYOLO_ASSIGN_OR_RETURN(std::string description, cuda::describe_device(device));
  return std::unique_ptr<Backend>(new CudaBackend(device, std::move(description)));
#else
  (void)device;
  return unsupported("target cuda: qyolo was built without QYOLO_CUDA");
#endif
}

}  // namespace qyolo::runtime
