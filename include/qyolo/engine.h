// The engine: what `qyolo build` compiles a model into, what an engine file holds, and what the
// runtime (qyolo/runtime.h) executes. A self-contained, target-specific program: I/O
// descriptors with formats and scales, the fused layer list with per-layer precision and op
// parameters, the weights already packed in the kernels' layout, and the activation arena plan.
//
// Only the C++ standard library is needed to hold, read or write an engine (docs/engine_format.md
// has the byte layout). Nothing here knows ONNX or the graph IR: the builder
// (qyolo/engine_builder.h) is the only bridge.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qyolo/conv_int8.h"
#include "qyolo/status.h"

namespace qyolo {

// "QYOLOENG" then the format version; bump kEngineFormatVersion on any layout change.
inline constexpr char kEngineMagic[8] = {'Q', 'Y', 'O', 'L', 'O', 'E', 'N', 'G'};
inline constexpr uint32_t kEngineFormatVersion = 2;

enum class EngineTarget : uint32_t { kCpu = 1, kCuda = 2 };
// "cpu", "cuda"; "unknown(N)" otherwise.
std::string target_name(EngineTarget target);
Expected<EngineTarget> parse_target(const std::string& text);

enum class ElementType : uint32_t { kInt8 = 1, kFloat16 = 2, kFloat32 = 3 };
std::string element_type_name(ElementType type);  // "int8", "fp16", "fp32"
size_t element_size(ElementType type);

// The formats a caller's buffers may have at the engine's edges (DESIGN.md "Tensor formats").
enum class IoFormat : uint32_t {
  kFp32Chw = 1,    // fp32:chw    N x C x H x W float, dequantized
  kFp16Chw16 = 2,  // fp16:chw16  N x ceil(C/16) x H x W x 16 half, padding channels zero
  kInt8Chw32 = 3,  // int8:chw32  N x ceil(C/32) x H x W x 32 int8 (value = q * scale)
  kInt8Hwc4 = 4,   // int8:hwc4   N x H x W x 4 int8, C <= 4, unused channels zero
};
std::string io_format_name(IoFormat format);  // "fp32:chw", ...
// Accepts trtexec's and DESIGN.md's spellings: int8:hwc4 (also int8:dla_hwc4), fp16:chw16,
// int8:chw32, fp32:chw (also fp32:linear).
Expected<IoFormat> parse_io_format(const std::string& text);

// An activation in the arena: NHWC. Image n starts at byte
// buffer.offset + n * buffer.bytes_per_image of the arena; pixel p, channel c is element
// p * layout.stride + layout.offset + c from there. A channel slice
// of a wider buffer (layout.offset > 0 or layout.stride > channels) is how Concat costs nothing:
// producers write straight into their slice of the Concat's output.
struct EngineTensor {
  std::string name;  // the ONNX value name
  ElementType type = ElementType::kInt8;
  int channels = 0, height = 0, width = 0;  // per image
  float scale = 1.0f;                       // int8: value = q * scale
  int buffer = -1;                          // index into Engine::buffers
  ChannelSlice layout;                      // elements; stride is the buffer's pixel stride

  int64_t image_elements() const { return int64_t{height} * width * layout.stride; }
  int64_t image_bytes() const { return image_elements() * int64_t(element_size(type)); }
};

// One block of the arena. Tensors that are slices of one buffer share it; buffers whose
// lifetimes (first writing layer .. last reading layer) do not overlap share bytes.
struct ArenaBuffer {
  uint64_t offset = 0;           // bytes from the arena start, for max_batch images
  uint64_t bytes_per_image = 0;  // the buffer holds max_batch images back to back
  int first_layer = 0, last_layer = 0;
};

// A caller-visible input or output: the format of the caller's buffer and the arena tensor
// the edge reformat layer reads or writes.
struct EngineIo {
  std::string name;
  IoFormat format = IoFormat::kFp32Chw;
  int channels = 0, height = 0, width = 0;  // per image, as the model has them
  float scale = 1.0f;                       // int8 formats: value = q * scale
  int tensor = -1;                          // index into Engine::tensors

  // Bytes of one image in this format (padding channels included).
  int64_t image_bytes() const;
};

enum class LayerKind : uint32_t {
  kConv = 1,           // int8 (conv_int8.h) or fp16 convolution with fused epilogue
  kMaxPool = 2,        // square window, -inf padding; exact on int8
  kResizeNearest = 3,  // integer upsampling factor, asymmetric/floor nearest
  kConvert = 4,        // int8 -> int8 (requantize), int8 <-> fp16, fp16 -> fp16 (copy)
  kAdd = 5,            // element-wise, dequantize / compute / requantize for int8
  kMul = 6,
  kSigmoid = 7,         // int8: 256-entry table; fp16: half(1 / (1 + exp(-x)))
  kInputReformat = 8,   // caller's input buffer (EngineIo) -> arena tensor
  kOutputReformat = 9,  // arena tensor -> caller's output buffer
};
std::string layer_kind_name(LayerKind kind);

enum class Activation : uint32_t { kNone = 0, kSilu = 1, kSigmoid = 2 };

// Bytes of Engine::weights, 64-byte aligned.
struct WeightRange {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

struct EngineLayer {
  std::string name;  // the ONNX node names it covers, joined by " + "
  std::string op;    // what it does, for reports: "Conv+SiLU+Add", "MaxPool", "Reformat"
  LayerKind kind = LayerKind::kConvert;
  ElementType precision = ElementType::kInt8;  // the arithmetic
  std::vector<int> inputs;  // tensor indices; kInputReformat: index into Engine::inputs
  int output = -1;          // tensor index; kOutputReformat: index into Engine::outputs

  // kConv. Geometry per image (shape.batch = 1). int8: weights are
  // pack_conv_int8_weights(shape, weight_format, ohwi) rows, weight_scales and bias float32
  // [out_channels]. fp16: weights half [in][kh][kw][out] (out fastest), bias half [out].
  ConvInt8Shape shape;
  ConvWeightFormat weight_format = ConvWeightFormat::kOhwi16;
  Activation activation = Activation::kNone;
  WeightRange weights, weight_scales, bias;
  // Fused residual Add: output = conv(+act) + residual. The reference runs the Conv and the
  // Add as two int8 layers, so with `conv_scale` > 0 the epilogue rounds the conv value to
  // int8 at conv_scale first and adds q * conv_scale + r * residual_scale (exact against the
  // reference); conv_scale == 0 is conv_int8.h's single rounding.
  int residual = -1;  // tensor index
  float conv_scale = 0.0f;
  // Fused standalone Sigmoid after an int8 conv (Activation::kSigmoid): the conv value is
  // rounded at conv_scale, then `table` maps it, as the reference's 256-entry table does.
  WeightRange table;  // int8[256], index q + 128

  // A Concat's requantizing copy, fused (int8 Conv, MaxPool, Resize; remove_concat). The
  // reference writes the layer's own int8 tensor, then requantizes it into the Concat:
  // - `requant_from` > 0 (the own tensor is read by the Concat alone): the layer rounds its
  //   result to int8 at requant_from (the own tensor's scale), and `output`, a slice of the
  //   Concat, receives requantize(q, requant_from, output's scale);
  // - `also_output` >= 0 (the own tensor has other readers): `output` receives q as usual and
  //   also_output, a slice of the Concat, receives requantize(q, output's scale, its scale).
  // requantize(q, from, to) = quantize_rne(float(q) * from, to), a copy when from == to.
  float requant_from = 0.0f;
  int also_output = -1;  // tensor index
  bool has_fused_copy() const { return requant_from > 0.0f || also_output >= 0; }

  // kMaxPool.
  int kernel = 1, stride = 1, pad = 0;
  // kResizeNearest.
  int factor = 1;
};

struct Engine;
// The scale the layer rounds its int8 result at: requant_from when set, else its output's.
float layer_round_scale(const Engine& engine, const EngineLayer& layer);
// A layer's fused Concat copy as the requantizing copy it replaces: from `source` (the
// layer's output, holding q) at `from` into `target` (the output itself, or also_output) at
// `to`.
struct FusedCopy {
  int source = -1, target = -1;  // tensor indices
  float from = 0.0f, to = 0.0f;
};
FusedCopy fused_copy(const Engine& engine, const EngineLayer& layer);  // has_fused_copy() layers

// Per-layer precision decision, kept for the fallback report (DLA's "layers running on GPU").
struct EngineFallback {
  std::string layer;   // ONNX node name
  std::string reason;  // "--layerPrecisions", "no scale for '...'", ...
};

struct Engine {
  EngineTarget target = EngineTarget::kCpu;
  std::string qyolo_version;  // of the builder
  std::string source;         // model file the engine was built from (informational)
  int max_batch = 1;
  std::vector<EngineIo> inputs, outputs;
  std::vector<EngineTensor> tensors;
  std::vector<ArenaBuffer> buffers;
  uint64_t arena_bytes_per_image = 0;  // the arena holds max_batch images of every buffer
  std::vector<EngineLayer> layers;     // in execution order
  std::vector<uint8_t> weights;        // every layer's packed weights, scales, tables
  std::vector<EngineFallback> fallbacks;

  uint64_t arena_bytes() const { return arena_bytes_per_image * uint64_t(max_batch); }
  // A typed view into `weights` (no copy); null for an empty range.
  template <typename T>
  const T* weight_data(const WeightRange& range) const {
    return range.bytes ? reinterpret_cast<const T*>(weights.data() + range.offset) : nullptr;
  }
  // Appends `bytes` bytes, 64-byte aligned, and returns their range.
  WeightRange add_weights(const void* data, size_t bytes);
};

// Structural checks every loader runs: indices in range, tensors inside their buffers,
// buffers inside the arena, weight ranges inside the weights, known layer kinds, two inputs to
// Add and Mul, int8 or fp16 convolutions. The message names the layer or tensor at fault.
Status validate_engine(const Engine& engine);

// The engine file (docs/engine_format.md): a 64-byte header (magic, format version, qyolo
// version, target, payload size, FNV-1a 64 checksum of the payload), then the payload.
std::vector<uint8_t> serialize_engine(const Engine& engine);
// Reads an engine from memory. `source` names it in errors. Wrong magic, format version,
// checksum, a truncated or inconsistent payload, and (with `expected_target`) a different
// target are one-line errors.
Expected<Engine> deserialize_engine(const void* data, size_t size, const std::string& source,
                                    const EngineTarget* expected_target = nullptr);
Status save_engine(const Engine& engine, const std::string& path);
Expected<Engine> load_engine(const std::string& path,
                             const EngineTarget* expected_target = nullptr);

// FNV-1a, 64 bit: the payload checksum.
uint64_t fnv1a64(const void* data, size_t size);

}  // namespace qyolo
