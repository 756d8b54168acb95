// The stem (YOLOv5's 6x6/2 convolution of the int8:hwc4 image) as a direct convolution: each
// block copies the input patch its output tile needs into shared memory once (a halo tile), and
// the warps read the MMA operands straight from it; the weights live in registers for the
// whole kernel. The implicit-GEMM kernels instead copy every output pixel's 144-byte window
// separately (nine 16-byte taps), so most of their instructions are copies; here a pixel costs
// under three warp instructions before the epilogue.
//
// K is the space-to-depth order of the kHwc4S2d weights (qyolo/conv_int8.h): tap (r, s) of the
// 3x3/1 view, then dy, dx, channel. In mma.sync m16n8k32 terms a K step is two taps, and each
// A register of a lane is exactly one hwc4 input pixel: lane l holds, for its rows, the 4 bytes
// at K offset 4 (l % 4) of both taps, i.e. input pixel (2Y + dy, 2X + dx) with dy = (l % 4) / 2,
// dx = l % 2. One 32-bit shared-memory load per register, no im2col at all.
//
// Block: 4 warps over 4 output rows x TW (32 or 16) columns, each warp one row and
// all BN channels (the layer's output channels, at most BN). Blocks are persistent and copy the
// next tile's patch (cp.async, double-buffered) while computing the current one.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "conv_int8_epilogue.cuh"
#include "conv_int8_mma.cuh"
#include "conv_int8_params.h"

namespace qyolo::cuda {

template <int BN, int TW>
struct StemTile {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTileH = kWarps;  // output rows: one per warp
  static constexpr int kTileW = TW;      // output columns: TW / 16 m16 fragments
  static constexpr int kMI = kTileW / 16, kNI = BN / 8;
  static constexpr int kView = 3;        // the 3x3/1 view of the 6x6/2 stem
  static constexpr int kTaps = kView * kView;
  static constexpr int kKSteps = (kTaps + 1) / 2;  // two 16-byte taps per k32 step
  static constexpr int kK = kTaps * 16;             // the packed weight row (144 bytes)
  // Input rows and pixels the tile reads: 2 per view row / column, plus up to 2 pixels by which
  // the patch's first column is moved back to a multiple of 4 (16-byte copies).
  static constexpr int kHaloRows = 2 * (kTileH + kView - 1);
  static constexpr int kHaloPixels = 2 * (kTileW + kView - 1) + 4;  // 72 for 32 columns
  // Bytes from one patch row to the next, 64 mod 128 (320 for 32 columns), so the lanes of one
  // load (8 pixel pairs of one row, dy 0 and 1) cover all 32 banks once.
  static constexpr int kPitch = (kHaloPixels * 4 - 64 + 127) / 128 * 128 + 64;
  static constexpr int kHaloBytes = kHaloRows * kPitch;
  static constexpr int kEpilogueBytes = kWarps * epilogue_stage_floats<BN>() * 4;
  static constexpr int kSmemBytes = 2 * kHaloBytes + kEpilogueBytes;
  static_assert(BN % 16 == 0 && BN <= 64, "the weights of at most 64 channels fit in registers");
  static_assert(kHaloPixels * 4 <= kPitch, "a patch row fits its pitch");
  static_assert(TW % 16 == 0, "whole m16 fragments");
};

// Copies the input patch of output tile (image, oy0, ox0) into `halo`, zeros outside the image.
template <int BN, int TW>
__device__ __forceinline__ void stem_load_halo(const ConvInt8Params& p, uint8_t* halo, int image,
                                               int oy0, int ox0, int tid) {
  using Tile = StemTile<BN, TW>;
  const int iy0 = 2 * (oy0 - p.pad);
  const int x = 2 * (ox0 - p.pad);
  const int ix0 = x - (x & 3);  // down to a multiple of 4 (x may be negative); x & 3: the shift
  const int8_t* image_base = p.input + int64_t{image} * p.in_h * p.in_w * 4;
  const uint32_t base = ptx::smem_address(halo);
  if (p.in_w % 4 == 0) {  // rows start 16-byte aligned: 4 pixels per copy, all in or all out
    constexpr int kChunks = Tile::kHaloPixels / 4;
    for (int i = tid; i < Tile::kHaloRows * kChunks; i += Tile::kThreads) {
      const int r = i / kChunks, c = i - r * kChunks;
      const int iy = iy0 + r, ix = ix0 + 4 * c;
      const bool ok = unsigned(iy) < unsigned(p.in_h) && unsigned(ix) < unsigned(p.in_w);
      const int8_t* src = ok ? image_base + (int64_t{iy} * p.in_w + ix) * 4 : p.input;
      ptx::cp_async_16(base + r * Tile::kPitch + c * 16, src, ok);
    }
  } else {  // pixel by pixel
    for (int i = tid; i < Tile::kHaloRows * Tile::kHaloPixels; i += Tile::kThreads) {
      const int r = i / Tile::kHaloPixels, c = i - r * Tile::kHaloPixels;
      const int iy = iy0 + r, ix = ix0 + c;
      const bool ok = unsigned(iy) < unsigned(p.in_h) && unsigned(ix) < unsigned(p.in_w);
      const int8_t* src = ok ? image_base + (int64_t{iy} * p.in_w + ix) * 4 : p.input;
      ptx::cp_async_4(base + r * Tile::kPitch + c * 4, src, ok);
    }
  }
}

// Four blocks per SM (128 registers) for 32 channels: 3% faster at batch 64 on an H200 than the
// compiler's own choice (161 registers, three blocks); the 3x3 kernels lose by such a cap.
template <int BN, int TW>
__global__ void __launch_bounds__(StemTile<BN, TW>::kThreads, BN <= 32 ? 4 : 1)
    conv_int8_stem_kernel(const __grid_constant__ ConvInt8Params p) {
  using Tile = StemTile<BN, TW>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = lane >> 2, quad = lane & 3;
  float* stage = reinterpret_cast<float*>(smem + 2 * Tile::kHaloBytes) +
                 warp * epilogue_stage_floats<BN>();
  const RowTiles<Tile::kTileH, Tile::kTileW> walk(p);

  // The weights, in the B fragment layout: register j of k step ks, n8 fragment ni holds
  // channel 8 ni + group, K bytes 32 ks + 16 j + 4 quad (zero past the nine taps).
  uint32_t b[Tile::kKSteps][Tile::kNI][2];
#pragma unroll
  for (int ks = 0; ks < Tile::kKSteps; ++ks)
#pragma unroll
    for (int ni = 0; ni < Tile::kNI; ++ni)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int n = ni * 8 + group, k = ks * 32 + j * 16 + quad * 4;
        b[ks][ni][j] = n < p.cout && k < Tile::kK
                           ? *reinterpret_cast<const uint32_t*>(p.weights + int64_t{n} * p.k_total + k)
                           : 0u;
      }

  wait_for_previous_kernel();  // the weights were read before it, overlapping the last kernel

  // This lane's byte offset in the patch for row `group` of fragment 0 at tap (0, 0), without
  // the tile's alignment shift: input row 2 warp + dy, pixel 2 group + dx.
  const int lane_offset = (2 * warp + (quad >> 1)) * Tile::kPitch + (2 * group + (quad & 1)) * 4;

  EpilogueState epilogue(p);
  int t = blockIdx.x;
  if (t < walk.tiles) {
    int image, oy0, ox0;
    walk.origin(t, image, oy0, ox0);
    stem_load_halo<BN, TW>(p, smem, image, oy0, ox0, tid);
  }
  ptx::cp_async_commit();
  for (int i = 0; t < walk.tiles; ++i, t += gridDim.x) {
    const int next = t + gridDim.x;
    if (next < walk.tiles) {
      int image, oy0, ox0;
      walk.origin(next, image, oy0, ox0);
      stem_load_halo<BN, TW>(p, smem + ((i + 1) & 1) * Tile::kHaloBytes, image, oy0, ox0, tid);
    }
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();
    __syncthreads();  // this tile's patch is visible to all

    int image, oy0, ox0;
    walk.origin(t, image, oy0, ox0);
    const int oy = oy0 + warp;
    if (oy < p.out_h) {
      const uint8_t* halo = smem + (i & 1) * Tile::kHaloBytes;
      const int shift = (2 * (ox0 - p.pad)) & 3;  // as stem_load_halo moved the patch
      const uint8_t* at = halo + lane_offset + shift * 4;
      int32_t acc[Tile::kMI][Tile::kNI][4];
#pragma unroll
      for (int mi = 0; mi < Tile::kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::kNI; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;
#pragma unroll
      for (int ks = 0; ks < Tile::kKSteps; ++ks) {
#pragma unroll
        for (int mi = 0; mi < Tile::kMI; ++mi) {
          // Rows group and group + 8 of fragment mi are output columns 16 mi + group (+ 8):
          // 2 input pixels each, 8 bytes.
          uint32_t a[4];
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            const int tap = 2 * ks + j;
            if (tap < Tile::kTaps) {
              const int r = tap / Tile::kView, s = tap % Tile::kView;
              const uint8_t* q = at + (2 * r) * Tile::kPitch + (mi * 16 + s) * 8;
              a[2 * j] = *reinterpret_cast<const uint32_t*>(q);
              a[2 * j + 1] = *reinterpret_cast<const uint32_t*>(q + 8 * 8);
            } else {
              a[2 * j] = a[2 * j + 1] = 0u;
            }
          }
#pragma unroll
          for (int ni = 0; ni < Tile::kNI; ++ni) ptx::mma_s8_16x8x32(acc[mi][ni], a, b[ks][ni]);
        }
      }
      const int row_m = (image * p.out_h + oy) * p.out_w;
      epilogue_warp(p, acc, stage, row_m + ox0, 0, lane, epilogue, row_m + p.out_w);
    }
    __syncthreads();  // every warp is done with this patch before it is refilled
  }
  ptx::cp_async_wait<0>();
}

template <int BN, int TW>
cudaError_t launch_conv_int8_stem(const ConvInt8Params& p, cudaStream_t stream) {
  using Tile = StemTile<BN, TW>;
  return launch_persistent<conv_int8_stem_kernel<BN, TW>>(Tile::kThreads, Tile::kSmemBytes,
                                 RowTiles<Tile::kTileH, Tile::kTileW>(p).tiles, p, stream);
}

}  // namespace qyolo::cuda
