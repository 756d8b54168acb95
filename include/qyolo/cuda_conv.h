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
  // Split K (the mma.sync tiles, "mma_*"): each output tile's K steps over split_k blocks, their
  // int32 partial sums added by the tile's last block before the epilogue, so the result is
  // exactly the unsplit one. For the small problems (batch 1's deep layers) where the output
  // tiles alone leave most SMs idle. 0: conv_int8_pick_split's choice where `workspace` holds
  // what it needs (else none); 1: none; n > 1: n (an error if the tile is not mma.sync or the
  // workspace too small; at most the layer's K steps of 64 bytes are used).
  int split_k = 0;
  // Device memory for split K, conv_int8_split_workspace_bytes() of it: zeroed by its owner once
  // (cudaMemset) and left zeroed by every launch. One convolution at a time may use it (its
  // tiles' counters live there): give each stream its own.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
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

// Split K: what the heuristic picks for `args` run with `tile` (1: none; QYOLO_CUDA_SPLIT_K=0
// turns the heuristic's splits off, for comparison; QYOLO_CUDA_SPLIT_UNITS and
// QYOLO_CUDA_SPLIT_MIN_STEPS are its timing knobs, src/kernels/cuda/conv_int8.cpp), and the
// workspace a split needs.
// conv_int8_split_workspace_bytes() is enough for any split the heuristic picks on the current
// device: what an engine allocates once.
int conv_int8_pick_split(const ConvInt8Args& args, int tile);
size_t conv_int8_split_workspace_bytes(const ConvInt8Args& args, int tile, int split);
size_t conv_int8_split_workspace_bytes();

// Times every tile variant that can run `args` (`repeats` launches each on `stream`, after one
// warm-up; the output is written) and returns the fastest: the per-layer choice an engine
// builder makes once, as cudnnFind does for cuDNN.
Expected<int> conv_int8_autotune(const ConvInt8Args& args, cudaStream_t stream, int repeats = 5);

}  // namespace qyolo::cuda
