// Generic CUDA kernels for the engine's data-movement and element-wise layers and its I/O
// reformats, element by element in any element type (int8, fp16, fp32), with the CPU engine
// backend's arithmetic (src/runtime/backends/cpu/engine_pointwise.cpp) written out with
// explicitly rounded operations, so results are identical to the CPU backend wherever no
// transcendental function is involved. The specialised int8 kernels of qyolo/cuda_ops.h are
// the fast path; these cover every type combination an engine may hold.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "qyolo/status.h"

namespace qyolo::cuda {

// One tensor in device memory: image n, pixel p, channel c is element
// n * image_elements + p * stride + c of `data` (which points at the slice's first channel).
struct ElementView {
  void* data = nullptr;
  int type = 1;  // qyolo::ElementType: 1 int8, 2 fp16, 3 fp32
  int stride = 0;
  int64_t image_elements = 0;
  float scale = 1.0f;  // int8: value = q * scale
};

enum class EngineLayerOp {
  kMaxPool,  // y = max over the window (-inf padding), moved as the CPU backend moves it
  kResizeNearest,
  kConvert,  // y = x in y's type (int8 -> int8 requantizes when the scales differ)
  kAdd,      // y = x + x2, dequantized and requantized
  kMul,
  kSigmoid,  // y = 1 / (1 + exp(-x))
  kTable,    // int8 -> int8: y = table[x + 128]
};

struct EngineLayerArgs {
  EngineLayerOp op = EngineLayerOp::kConvert;
  int batch = 1;
  int height = 0, width = 0, channels = 0;  // output, per image
  int in_height = 0, in_width = 0;          // kMaxPool, kResizeNearest
  ElementView x, x2, y;
  int kernel = 1, stride = 1, pad = 0, factor = 1;
  const int8_t* table = nullptr;  // device, 256 entries, index q + 128
};

Status engine_layer(const EngineLayerArgs& args, cudaStream_t stream);

// The caller's input buffer in `format` (qyolo::IoFormat: 1 fp32:chw, 2 fp16:chw16,
// 3 int8:chw32, 4 int8:hwc4) -> an arena tensor; padding channels of an unsliced tensor zeroed.
struct InputReformatArgs {
  int format = 1;
  int batch = 1, height = 0, width = 0, channels = 0;
  const void* src = nullptr;
  int64_t src_image_bytes = 0;
  float src_scale = 1.0f;  // int8 formats
  ElementView y;
  bool zero_padding = true;  // the tensor is not a slice: its padding channels are written
};
Status engine_input_reformat(const InputReformatArgs& args, cudaStream_t stream);

// An arena tensor -> the caller's output buffer in `format`, padding channels zero.
struct OutputReformatArgs {
  int format = 1;
  int batch = 1, height = 0, width = 0, channels = 0;
  ElementView x;
  void* dst = nullptr;
  int64_t dst_image_bytes = 0;
  float dst_scale = 1.0f;  // int8 formats
};
Status engine_output_reformat(const OutputReformatArgs& args, cudaStream_t stream);

}  // namespace qyolo::cuda
