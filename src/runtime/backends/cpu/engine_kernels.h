// The CPU backend's layer kernels: each runs one EngineLayer over a batch in the arena, with
// the arithmetic of the INT8 reference backend (conv_int8.h for convolutions), so the results
// equal Int8Executor's bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "qyolo/engine.h"
#include "qyolo/status.h"

namespace qyolo::cpu_engine {

inline float half_to_float_bits(uint16_t h) { return half_bits_to_float(h); }

inline float round_half(float value) { return half_to_float_bits(float_to_half_rne(value)); }

// Everything a kernel needs to address tensors: the arena and the engine's tables.
struct Context {
  const Engine* engine = nullptr;
  uint8_t* arena = nullptr;
  int batch = 1;
  // fp16 convolution weights and bias converted to float once, per layer (empty otherwise).
  const std::vector<std::vector<float>>* fp16_weights = nullptr;
  const std::vector<std::vector<float>>* fp16_bias = nullptr;

  // Image n of tensor t (its first channel, pixel 0).
  template <typename T>
  T* image(int t, int n) const {
    const EngineTensor& tensor = engine->tensors[t];
    const ArenaBuffer& b = engine->buffers[tensor.buffer];
    return reinterpret_cast<T*>(arena + b.offset + uint64_t(n) * b.bytes_per_image) +
           tensor.layout.offset;
  }
};

Status run_conv_int8(const Context& ctx, int layer);
Status run_conv_fp16(const Context& ctx, int layer);
Status run_pointwise(const Context& ctx, int layer);  // MaxPool, Resize, Convert, Add, Mul, Sigmoid
// A layer's fused Concat copy (EngineLayer::requant_from / also_output), after the layer ran
// with layer_round_scale: the output requantized in place, or into also_output.
Status apply_fused_copy(const Context& ctx, int layer);
Status run_input_reformat(const Context& ctx, int layer, const void* input);
Status run_output_reformat(const Context& ctx, int layer, void* output);

}  // namespace qyolo::cpu_engine
