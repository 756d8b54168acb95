// INT8 tensor-core convolutions on CUDA (sm_80 and newer) with the fused epilogue of
// qyolo/conv_int8.h: per-channel dequantization, bias, SiLU, residual add, requantization to
// int8 (or float16 output, or the raw int32 accumulators), written into a channel slice.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "qyolo/conv_int8.h"
#include "qyolo/status.h"

namespace qyolo::cuda {

// One convolution. Every pointer is device memory.
struct ConvInt8Args {
  ConvInt8Shape shape;
  const int8_t* input = nullptr;  // NHWC int8; see input_layout
  // kOhwi16 weight format: stride and offset multiples of 16 (the padded channels may hold
  // anything, their weights are zero). kHwc4 format: stride 4, offset 0 (int8:hwc4).
  ChannelSlice input_layout;
  const int8_t* weights = nullptr;  // pack_conv_int8_weights(shape, conv_int8_weight_format(...))
  ConvInt8Epilogue epilogue;        // weight_scales, bias, residual on the device
  void* output = nullptr;           // int8, half or int32 per epilogue.output
  ChannelSlice output_layout;
  // 32: int8 output in the engine's int8:chw32 format instead of output_layout, N x
  // ceil(C/32) x H x W x 32 with the padded channels written zero (an engine's head written in
  // place of its output reformat). Needs int8 output and round_up(C, 16) == round_up(C, 32).
  int output_block = 0;
  // Tile variant (conv_int8_tile_name); -1 lets conv_int8_pick_tile choose.
  int tile = -1;
};

// Launches the convolution on `stream`. Validates the arguments first; launch errors are
// returned, errors during execution surface at the next synchronizing call.
Status conv_int8(const ConvInt8Args& args, cudaStream_t stream);

// The tile variants, for benchmarks and tests: how many, their names ("256x128_w4x2_s3"),
// whether a variant can run `args` (the stem variants need the kHwc4 weight format, the
// others kOhwi16), and the variant the heuristic picks for `args` on the current device.
int conv_int8_tile_count();
const char* conv_int8_tile_name(int tile);
bool conv_int8_tile_supports(int tile, const ConvInt8Args& args);
int conv_int8_pick_tile(const ConvInt8Args& args);

// Times every tile variant that can run `args` (`repeats` launches each on `stream`, after one
// warm-up; the output is written) and returns the fastest: the per-layer choice an engine
// builder makes once, as cudnnFind does for cuDNN.
Expected<int> conv_int8_autotune(const ConvInt8Args& args, cudaStream_t stream, int repeats = 5);

}  // namespace qyolo::cuda
