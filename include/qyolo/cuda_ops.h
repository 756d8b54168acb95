// The CUDA kernels of a YOLOv5 engine besides the INT8 convolution (qyolo/cuda_conv.h):
// preprocessing (uint8 RGB -> letterboxed, normalised, quantized input), INT8 NHWC MaxPool,
// nearest Resize, requantizing copies and lookup tables, reformats at the I/O edges, an FP16
// tensor-core convolution, int8 <-> fp16 conversion, and head decode + NMS. docs/cuda_ops.md
// gives formats and tolerances.
//
// Every op is `Status op(const Args&, cudaStream_t)`: pointers in Args are device memory unless
// the field says otherwise, the arguments are validated first (the message names the op and the
// bad field), launch errors are returned, and nothing synchronizes, so every op can be captured
// into a CUDA graph. Each op has a CPU reference: the one named in its comment.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "qyolo/conv_int8.h"  // ChannelSlice, ConvOutput
#include "qyolo/status.h"

namespace qyolo::cuda {

// ---- Preprocessing (reference: letterbox() and image_to_tensor() in qyolo/vision.h, then
// quantize_rne from qyolo/conv_int8.h)

// Where one image lands on the canvas, computed on the host exactly as letterbox() does.
struct LetterboxPlan {
  int width = 0, height = 0;                  // the original image
  int resized_width = 0, resized_height = 0;  // long side to `size`, short side rounded up
  int left = 0, top = 0, canvas = 0;
  int size = 0;                                   // the requested long side
  float gain = 1.0f, pad_x = 0.0f, pad_y = 0.0f;  // as qyolo::Letterbox, for mapping boxes back
};
LetterboxPlan letterbox_plan(int width, int height, int size, int canvas);

enum class PreprocessOutput {
  kInt8Hwc4,     // N x canvas x canvas x 4 int8, channel 3 zero, q = rne(pixel / 255 / scale)
  kFloat16Nchw,  // N x 3 x canvas x canvas half, pixel / 255
  kFloat32Nchw,  // N x 3 x canvas x canvas float, pixel / 255
};

struct PreprocessImage {
  const uint8_t* pixels = nullptr;  // interleaved RGB, device memory
  int row_bytes = 0;                // bytes from one row to the next (>= width * 3)
  LetterboxPlan plan;
};

// Any number of images (each its own size) into batch slots 0..count-1 of `output`. The images
// are passed by value (host array), so nothing is uploaded and the call is capturable.
struct PreprocessArgs {
  const PreprocessImage* images = nullptr;  // host array of `count`
  int count = 0;
  int canvas = 640;
  PreprocessOutput output_format = PreprocessOutput::kInt8Hwc4;
  float input_scale = 1.0f;  // kInt8Hwc4 only
  void* output = nullptr;
};
Status preprocess(const PreprocessArgs& args, cudaStream_t stream);

// ---- INT8 NHWC ops on channel slices (reference: the INT8 executor's rules,
// docs/int8_reference.md). Where input_scale != output_scale the selected value is requantized:
// q_out = clamp(rne(q_in * input_scale / output_scale)) with the multiply and divide rounded as
// written.

struct NhwcShape {
  int batch = 1, height = 0, width = 0, channels = 0;
};

// A Concat's requantizing copy fused into a MaxPool or Resize (the engine's
// EngineLayer::requant_from / also_output): mid_scale > 0 requantizes the selected value to
// mid_scale first, then to output_scale (the reference's own tensor, then its copy: two
// roundings); y2, when set, also receives y requantized from output_scale to y2_scale.
struct FusedCopyInt8 {
  float mid_scale = 0.0f;
  int8_t* y2 = nullptr;
  ChannelSlice y2_layout;
  float y2_scale = 1.0f;
};

// MaxPool with a k x k window, stride, symmetric padding (padding never wins, as -inf).
struct MaxPoolInt8Args {
  NhwcShape input;  // output size follows from kernel/stride/pad (floor)
  int kernel = 5, stride = 1, pad = 2;
  const int8_t* x = nullptr;
  ChannelSlice x_layout;
  int8_t* y = nullptr;
  ChannelSlice y_layout;
  float input_scale = 1.0f, output_scale = 1.0f;
  FusedCopyInt8 copy;
};
Status maxpool_int8(const MaxPoolInt8Args& args, cudaStream_t stream);
inline int pool_out_size(int in, int kernel, int stride, int pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

// Nearest Resize by an integer factor (ONNX asymmetric / floor, as YOLOv5's Upsample x2).
struct ResizeNearestInt8Args {
  NhwcShape input;
  int factor = 2;
  const int8_t* x = nullptr;
  ChannelSlice x_layout;
  int8_t* y = nullptr;
  ChannelSlice y_layout;
  float input_scale = 1.0f, output_scale = 1.0f;
  FusedCopyInt8 copy;
};
Status resize_nearest_int8(const ResizeNearestInt8Args& args, cudaStream_t stream);

// Copies `shape` from one slice into another, requantizing when the scales differ: the input of
// a Concat whose producer could not write into the output slice at the output's scale.
struct RequantizeInt8Args {
  NhwcShape shape;
  const int8_t* x = nullptr;
  ChannelSlice x_layout;
  int8_t* y = nullptr;
  ChannelSlice y_layout;
  float input_scale = 1.0f, output_scale = 1.0f;
};
Status requantize_int8(const RequantizeInt8Args& args, cudaStream_t stream);

// y = table[x + 128] element by element; the table is passed by value.
struct Int8Table {
  int8_t values[256];
};
// The INT8 executor's Sigmoid table: q -> rne(sigmoid(q * input_scale) / output_scale).
Int8Table sigmoid_table(float input_scale, float output_scale);
struct LookupInt8Args {
  NhwcShape shape;
  const int8_t* x = nullptr;
  ChannelSlice x_layout;
  int8_t* y = nullptr;
  ChannelSlice y_layout;
  Int8Table table;
};
Status lookup_int8(const LookupInt8Args& args, cudaStream_t stream);

// ---- Precision edges: int8 <-> fp16 NHWC, slice to slice.
// kInt8ToFloat16: y = half(q * scale).  kFloat16ToInt8: q = clamp(rne(float(x) / scale)).
enum class ConvertKind { kInt8ToFloat16, kFloat16ToInt8 };
struct ConvertArgs {
  ConvertKind kind = ConvertKind::kInt8ToFloat16;
  NhwcShape shape;
  const void* x = nullptr;
  ChannelSlice x_layout;
  void* y = nullptr;
  ChannelSlice y_layout;
  float scale = 1.0f;
};
Status convert_int8_fp16(const ConvertArgs& args, cudaStream_t stream);

// ---- Reformat at the I/O edges (DESIGN.md "Tensor formats"): NHWC slice -> one of
//   kFloat16Chw16  N x ceil(C/16) x H x W x 16 half, padded channels zero
//   kInt8Chw32     N x ceil(C/32) x H x W x 32 int8, padded channels zero
//   kFloat32Nchw   N x C x H x W float
// from int8 (dequantized with input_scale for the float outputs, copied for kInt8Chw32) or from
// fp16 (converted; quantized with output_scale for kInt8Chw32).
enum class ReformatInput { kInt8, kFloat16 };
enum class ReformatOutput { kFloat16Chw16, kInt8Chw32, kFloat32Nchw };
struct ReformatArgs {
  NhwcShape shape;
  ReformatInput input_type = ReformatInput::kInt8;
  const void* x = nullptr;
  ChannelSlice x_layout;
  float input_scale = 1.0f;  // int8 input
  ReformatOutput output_format = ReformatOutput::kFloat16Chw16;
  float output_scale = 1.0f;  // fp16 input to kInt8Chw32
  void* y = nullptr;
};
Status reformat(const ReformatArgs& args, cudaStream_t stream);
size_t reformat_output_elements(const NhwcShape& shape, ReformatOutput format);

// ---- FP16 convolution (reference: conv_fp16_reference in the tests: half inputs and weights,
// float accumulation, bias, SiLU, then half or int8): implicit GEMM on mma.sync m16n8k16 with
// float32 accumulation. Input fp16 NHWC slice (any stride and offset); square kernel, one group.
struct ConvFp16Args {
  ConvInt8Shape shape;          // the same geometry struct as the INT8 convolution
  const uint16_t* x = nullptr;  // half bits
  ChannelSlice x_layout;
  const uint16_t* weights = nullptr;  // pack_conv_fp16_weights
  const float* bias = nullptr;        // [out_channels] or null
  bool silu = false;
  ConvOutput output = ConvOutput::kFloat16;  // kFloat16 or kInt8
  float output_scale = 1.0f;                 // kInt8 only
  void* y = nullptr;
  ChannelSlice y_layout;
};
Status conv_fp16(const ConvFp16Args& args, cudaStream_t stream);
// Channels of one packed weight row per tap: in_channels rounded up to 32.
inline int conv_fp16_packed_channels(int in_channels) { return round_up(in_channels, 32); }
// OHWI float weights -> [out][kh][kw][conv_fp16_packed_channels(in)] half bits, zero padded.
std::vector<uint16_t> pack_conv_fp16_weights(const ConvInt8Shape& shape, const float* weights_ohwi);

// ---- Head decode and NMS (reference: decode_heads() and non_max_suppression() in
// qyolo/vision.h, with the validation options).

enum class HeadType { kInt8, kFloat16 };
struct HeadTensor {
  const void* data = nullptr;  // 3 * (5 + classes) channels, laid out as channel_block says
  ChannelSlice layout;         // channel_block 0: an NHWC slice
  // 0: NHWC in `layout`. 16 or 32: the engine's blocked output formats (fp16:chw16 for fp16
  // heads, int8:chw32 for int8 ones), N x ceil(C / block) x H x W x block, so detect reads an
  // engine's head outputs where the engine wrote them (`layout` unused).
  int channel_block = 0;
  int height = 0, width = 0;
  float stride = 8.0f;
  float anchors[6] = {};  // w, h of the three anchors, pixels
};
struct HeadsArgs {
  int batch = 1;
  int classes = 80;
  HeadType type = HeadType::kFloat16;
  float scales[3] = {1.0f, 1.0f, 1.0f};  // int8 heads
  HeadTensor heads[3];                   // strides 8, 16, 32 in order
  // fp16 heads: a device table of the sigmoid of every half value (65536 floats,
  // half_sigmoid_table()) as the CPU's decode_heads() computes it, so the decoded values equal
  // the CPU's bit for bit; null computes the sigmoid in double precision, which the CPU's
  // single-precision expf misses by an ulp on a few values in ten thousand.
  const float* half_sigmoid = nullptr;
};
// The table for HeadsArgs::half_sigmoid, indexed by the half's bits, computed on the host.
std::vector<float> half_sigmoid_table();
// The standard YOLOv5 strides and anchors filled into `args.heads` (data and layout untouched).
void set_default_anchors(HeadsArgs& args);
int64_t head_rows(const HeadsArgs& args);  // 3 * sum(H * W)

// Decoded rows, N x head_rows x (5 + classes) float, as decode_heads() writes them.
Status decode_heads(const HeadsArgs& args, float* rows, cudaStream_t stream);

struct DetectionBox {  // the layout of qyolo::Detection
  float x1, y1, x2, y2, score;
  int class_id;
};
struct DetectArgs {
  HeadsArgs heads;
  float conf_threshold = 0.001f, iou_threshold = 0.6f;
  int max_det = 300, max_nms = 30000;
  // true: every class above conf is a candidate (validation); false: only the box's best class
  // (the first of the highest obj * cls), as detect.py and NmsOptions::multi_label = false.
  bool multi_label = true;
  // Candidates (box x class above conf) one image may produce before the max_nms cut; more are
  // counted but dropped, and the image's result is then not exact (see candidate_counts).
  int max_candidates = 1 << 17;
  const LetterboxPlan* plans = nullptr;  // device, [batch]; null keeps canvas coordinates
  void* workspace = nullptr;             // detect_workspace_bytes(args)
  DetectionBox* detections = nullptr;    // [batch][max_det], score order
  int* counts = nullptr;                 // [batch]
  int* candidate_counts = nullptr;       // [batch] or null: candidates before the cut
};
size_t detect_workspace_bytes(const DetectArgs& args);
// Decode, candidates (obj > conf, score = obj * cls > conf, every class or the best), the max_nms best in
// score order (ties by candidate order), class-aware greedy NMS, max_det kept, boxes mapped back
// to the original image and clipped when plans are given.
Status detect(const DetectArgs& args, cudaStream_t stream);

}  // namespace qyolo::cuda
