// What the host passes to every INT8 convolution kernel, and the tile variants' table.
// Plain C++ (no device code) so the dispatcher compiles with the host compiler.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "fast_divmod.h"

namespace qyolo::cuda {

enum ConvKernelOutput : int { kOutInt8 = 0, kOutFloat16 = 1, kOutInt32 = 2 };

struct ConvInt8Params {
  const int8_t* input;          // already offset to the first input channel
  const int8_t* weights;        // packed rows of k_total bytes
  const float* weight_scales;   // [cout]
  const float* bias;            // [cout] or null
  const int8_t* residual;       // already offset to its first channel, or null
  void* output;                 // already offset to the first output channel

  int in_h, in_w, out_h, out_w;
  int kernel, stride, pad;  // of the 3x3/1 view for kHwc4S2d (in_h, in_w stay real pixels)
  int in_stride;     // elements from one input pixel to the next
  int taps_channels; // bytes of K per tap: padded input channels (multiple of 16); 16 for S2D
  int k_total;       // packed weight row in bytes, multiple of 16
  int cout;
  int pixels;        // batch * out_h * out_w
  int out_stride, residual_stride;

  FastDivmod div_out_hw, div_out_w, div_n_tiles;  // out_h * out_w, out_w, output-channel tiles

  float input_scale, residual_scale, output_scale, inv_output_scale;
  float conv_scale, inv_conv_scale;  // conv_scale 0: one rounding (ConvInt8Epilogue)
  int silu;
  int output_kind;   // ConvKernelOutput
  int vector_io;     // output/residual offsets and strides allow 16-byte accesses
  // 0: the output is an NHWC slice (out_stride). 32: int8:chw32, N x out_blocks x H x W x 32,
  // out_hw = out_h * out_w (the engine's blocked output format, written in place of a reformat).
  int out_block, out_blocks, out_hw;
  // Split K (the mma.sync kernel only; 1 elsewhere): each output tile's K steps over split_k
  // blocks, each block's int32 partial sums in split_partials, the tile's last block to arrive
  // (split_counters[tile], left zero again) adding them up before the epilogue.
  int split_k;
  int* split_counters;
  int4* split_partials;
};

// The kernel variants, in two lists. K runs in steps of 64 bytes; each variant is compiled in
// its own file (tiles/), so a new one costs one more small translation unit.
//   MMA(name, BM, BN, WARPS_M, WARPS_N, STAGES, S2D): mma.sync (sm_80+), BM output pixels by
//     BN output channels per block, WARPS_M x WARPS_N warps, a STAGES-deep cp.async pipeline.
//   WGMMA(name, BM, BN, STAGES, S2D): wgmma (sm_90a), BM / 64 warpgroups.
// S2D variants run the stem's hwc4 input (kHwc4S2d weights), the others kOhwi16.
#define QYOLO_CONV_INT8_MMA_TILES(X)      \
  X(mma_128x128_w2x2_s4, 128, 128, 2, 2, 4, false) \
  X(mma_256x64_w4x2_s4, 256, 64, 4, 2, 4, false)   \
  X(mma_128x64_w2x2_s4, 128, 64, 2, 2, 4, false)   \
  X(mma_64x64_w2x2_s4, 64, 64, 2, 2, 4, false)     \
  X(mma_64x64_w4x2_s4, 64, 64, 4, 2, 4, false)     \
  X(mma_64x32_w2x2_s4, 64, 32, 2, 2, 4, false)     \
  X(mma_256x32_w8x1_s4, 256, 32, 8, 1, 4, false)   \
  X(mma_128x32_w4x1_s4, 128, 32, 4, 1, 4, false)   \
  X(mma_s2d_128x32_w4x1_s4, 128, 32, 4, 1, 4, true) \
  X(mma_s2d_128x64_w2x2_s4, 128, 64, 2, 2, 4, true)

// The wgmma variants prefetch STAGES - 2 steps ahead: deep enough that a step's data has
// arrived from DRAM when its turn comes, within two blocks' shared memory per SM where the
// tile allows; the 4-stage ones fit three blocks per SM for the pointwise (TMA) layers, whose
// few K steps need little prefetch.
#define QYOLO_CONV_INT8_WGMMA_TILES(X)       \
  X(wgmma_128x256_s5, 128, 256, 5, false)     \
  X(wgmma_256x128_s4, 256, 128, 4, false)     \
  X(wgmma_256x64_s4, 256, 64, 4, false)       \
  X(wgmma_256x32_s6, 256, 32, 6, false)       \
  X(wgmma_128x128_s5, 128, 128, 5, false)     \
  X(wgmma_128x64_s6, 128, 64, 6, false)       \
  X(wgmma_128x64_s4, 128, 64, 4, false)       \
  X(wgmma_64x64_s4, 64, 64, 4, false)         \
  X(wgmma_128x32_s4, 128, 32, 4, false)       \
  X(wgmma_64x128_s8, 64, 128, 8, false)       \
  X(wgmma_64x64_s8, 64, 64, 8, false)         \
  X(wgmma_128x32_s8, 128, 32, 8, false)       \
  X(wgmma_s2d_128x32_s8, 128, 32, 8, true)    \
  X(wgmma_s2d_128x64_s6, 128, 64, 6, true)

// wgmma variants whose A tile (the im2col of a 3x3 or strided convolution) comes by the copy
// engine's im2col mode, one copy per K step, instead of per-thread cp.async copies: for inputs
// whose K per tap (taps_channels) is a multiple of the 64-byte K step. IM2COL(name, BM, BN, STAGES).
#define QYOLO_CONV_INT8_WGMMA_IM2COL_TILES(X)   \
  X(wgmma_im2col_128x64_s4, 128, 64, 4)         \
  X(wgmma_im2col_128x128_s5, 128, 128, 5)       \
  X(wgmma_im2col_128x256_s5, 128, 256, 5)

// The stem's direct convolution (conv_int8_stem.cuh, sm_80+): a 6x6/2 convolution of an
// int8:hwc4 input (kHwc4S2d weights) with at most BN output channels, the input patch of each
// 4 x TW output tile copied once (16 columns: more tiles for small batches, fewer registers
// for 64 channels). STEM(name, BN, TW).
#define QYOLO_CONV_INT8_STEM_TILES(X) \
  X(stem_s2d_4x32_n32, 32, 32)        \
  X(stem_s2d_4x16_n32, 32, 16)        \
  X(stem_s2d_4x16_n64, 64, 16)

// 3x3 convolutions of 32-channel inputs (K per tap 32 bytes) with at most BN output channels,
// stride S, as direct convolutions (conv_int8_halo.cuh, sm_80+), 4 x TW output tiles (16
// columns measured no faster than 32 on an H200 for YOLOv5's layers).
// HALO(name, BN, S, TW).
#define QYOLO_CONV_INT8_HALO_TILES(X)   \
  X(halo3x3_s1_4x32_n32, 32, 1, 32)     \
  X(halo3x3_s1_4x32_n64, 64, 1, 32)     \
  X(halo3x3_s2_4x32_n32, 32, 2, 32)     \
  X(halo3x3_s2_4x32_n64, 64, 2, 32)

// A 2D uint8 tensor map for the copy engine, 64-byte swizzled boxes of box_inner x box_outer
// (the kernels' shared-memory tile layout): `outer` rows of `inner` bytes, `row_bytes` apart.
cudaError_t encode_tma_2d(CUtensorMap* map, const void* base, uint64_t inner, uint64_t outer,
                          uint64_t row_bytes, uint32_t box_inner, uint32_t box_outer);

// A 4D (N, H, W, C) im2col tensor map of the convolution's input for the im2col variants:
// 64 channels of `box_pixels` output pixels per copy, 64-byte swizzled like the A tiles, the
// window walked with the convolution's stride and padding.
cudaError_t encode_tma_im2col(CUtensorMap* map, const ConvInt8Params& params, uint32_t box_pixels);

// Launch one variant; each is defined by an explicit instantiation in tiles/<name>.cu.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool S2D>
cudaError_t launch_conv_int8_mma(const ConvInt8Params& params, cudaStream_t stream);
template <int BM, int BN, int STAGES, bool S2D>
cudaError_t launch_conv_int8_wgmma(const ConvInt8Params& params, cudaStream_t stream);
template <int BM, int BN, int STAGES>
cudaError_t launch_conv_int8_wgmma_im2col(const ConvInt8Params& params, cudaStream_t stream);
template <int BN, int TW>
cudaError_t launch_conv_int8_stem(const ConvInt8Params& params, cudaStream_t stream);
template <int BN, int S, int TW>
cudaError_t launch_conv_int8_halo(const ConvInt8Params& params, cudaStream_t stream);

}  // namespace qyolo::cuda
