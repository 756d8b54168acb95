// 3x3 convolutions of 32-channel inputs (K per tap 32 bytes: one k32 MMA step per tap) as
// direct convolutions, like the stem's (conv_int8_stem.cuh): each block copies the input patch
// of its 4 x TW (32 or 16) output tile into shared memory once, and the warps read their A fragments from
// it with ldmatrix, tap by tap; the weights of the layer (at most BN channels) are in shared
// memory for the whole kernel. The implicit-GEMM kernels copy each pixel's window per tap
// (nine 32-byte copies per output pixel, which costs more than the MMAs on these narrow layers).
//
// Layout of a patch: per input row, the pixels of each column parity in their own plane for
// stride 2 (so a tap's 8 consecutive output columns read 8 consecutive pixels of one plane),
// one plane for stride 1; a pixel's two 16-byte halves swap places in every other group of 4
// pixels, so the 8 rows of an ldmatrix phase always fall in 8 distinct bank groups.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "conv_int8_epilogue.cuh"
#include "conv_int8_mma.cuh"
#include "conv_int8_params.h"

namespace qyolo::cuda {

template <int BN, int S, int TW>
struct HaloTile {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTileH = kWarps;  // output rows: one per warp
  static constexpr int kTileW = TW;      // output columns: TW / 16 m16 fragments
  static constexpr int kMI = kTileW / 16, kNI = BN / 8;
  static constexpr int kTaps = 9;
  static constexpr int kK = kTaps * 32;  // the packed weight row
  static constexpr int kRows = (kTileH - 1) * S + 3;  // input rows of a patch
  static constexpr int kCols = (kTileW - 1) * S + 3;  // input columns of a patch
  static constexpr int kPlanePixels = (kCols + S - 1) / S;
  static constexpr int kRowBytes = S * kPlanePixels * 32;
  static constexpr int kHaloBytes = kRows * kRowBytes;
  // Weight rows 16 bytes longer than K: 304 bytes = 12 banks mod 32, so the 8 rows of an
  // ldmatrix phase fall in distinct bank groups.
  static constexpr int kBPitch = kK + 16;
  static constexpr int kBBytes = BN * kBPitch;
  static constexpr int kEpilogueBytes = kWarps * epilogue_stage_floats<BN>() * 4;
  static constexpr int kSmemBytes = kBBytes + 2 * kHaloBytes + kEpilogueBytes;
  static_assert(BN % 16 == 0 && BN <= 64, "at most 64 output channels");
  static_assert(S == 1 || S == 2, "stride 1 or 2");
  static_assert(TW % 16 == 0, "whole m16 fragments");
  static_assert(kBBytes % 16 == 0 && kHaloBytes % 16 == 0, "16-byte aligned regions");
};

// Byte offset of half `h` of relative column `c` in a patch row.
template <int BN, int S, int TW>
__device__ __forceinline__ int halo_column(int c, int h) {
  using Tile = HaloTile<BN, S, TW>;
  const int plane = S == 2 ? (c & 1) : 0, at = S == 2 ? (c >> 1) : c;
  return plane * Tile::kPlanePixels * 32 + at * 32 + ((h ^ ((at >> 2) & 1)) << 4);
}

template <int BN, int S, int TW>
__device__ __forceinline__ void halo_load(const ConvInt8Params& p, uint8_t* halo, int image, int oy0,
                                          int ox0, int tid) {
  using Tile = HaloTile<BN, S, TW>;
  const int iy0 = oy0 * S - p.pad, ix0 = ox0 * S - p.pad;
  const int8_t* image_base = p.input + int64_t{image} * p.in_h * p.in_w * p.in_stride;
  const uint32_t base = ptx::smem_address(halo);
  for (int i = tid; i < Tile::kRows * Tile::kCols * 2; i += Tile::kThreads) {
    const int h = i & 1, pixel = i >> 1;
    const int r = pixel / Tile::kCols, c = pixel - r * Tile::kCols;
    const int iy = iy0 + r, ix = ix0 + c;
    const bool ok = unsigned(iy) < unsigned(p.in_h) && unsigned(ix) < unsigned(p.in_w);
    const int8_t* src = ok ? image_base + (int64_t{iy} * p.in_w + ix) * p.in_stride + 16 * h : p.input;
    ptx::cp_async_16(base + r * Tile::kRowBytes + halo_column<BN, S, TW>(c, h), src, ok);
  }
}

template <int BN, int S, int TW>
__global__ void __launch_bounds__(HaloTile<BN, S, TW>::kThreads)
    conv_int8_halo_kernel(const __grid_constant__ ConvInt8Params p) {
  using Tile = HaloTile<BN, S, TW>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint8_t* b_tile = smem;
  uint8_t* halos = smem + Tile::kBBytes;
  float* stage = reinterpret_cast<float*>(halos + 2 * Tile::kHaloBytes) +
                 warp * epilogue_stage_floats<BN>();
  const RowTiles<Tile::kTileH, Tile::kTileW> walk(p);
  // The weights, once: BN rows of K bytes (zero past the layer's channels).
  {
    const uint32_t b_base = ptx::smem_address(b_tile);
    for (int i = tid; i < BN * (Tile::kK / 16); i += Tile::kThreads) {
      const int n = i / (Tile::kK / 16), chunk = i - n * (Tile::kK / 16);
      const bool ok = n < p.cout;
      ptx::cp_async_16(b_base + n * Tile::kBPitch + chunk * 16,
                       ok ? p.weights + int64_t{n} * p.k_total + chunk * 16 : p.weights, ok);
    }
  }
  wait_for_previous_kernel();  // the weights' loads issued before it, overlapping the last kernel
  int t = blockIdx.x;
  if (t < walk.tiles) {
    int image, oy0, ox0;
    walk.origin(t, image, oy0, ox0);
    halo_load<BN, S, TW>(p, halos, image, oy0, ox0, tid);
  }
  ptx::cp_async_commit();

  // ldmatrix rows of this lane: A row (output column) lane % 16 of a fragment, K half lane / 16;
  // B row (channel) 16 nj + lane % 8 + 8 (lane / 16), K half (lane / 8) % 2.
  const int a_row = lane & 15, a_half = lane >> 4;
  const uint32_t b_lane = ptx::smem_address(b_tile) +
                          ((lane & 7) + ((lane >> 4) << 3)) * Tile::kBPitch + ((lane >> 3) & 1) * 16;
  EpilogueState epilogue(p);
  for (int i = 0; t < walk.tiles; ++i, t += gridDim.x) {
    const int next = t + gridDim.x;
    if (next < walk.tiles) {
      int image, oy0, ox0;
      walk.origin(next, image, oy0, ox0);
      halo_load<BN, S, TW>(p, halos + ((i + 1) & 1) * Tile::kHaloBytes, image, oy0, ox0, tid);
    }
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();
    __syncthreads();  // this tile's patch (and, the first time, the weights) visible to all

    int image, oy0, ox0;
    walk.origin(t, image, oy0, ox0);
    const int oy = oy0 + warp;
    if (oy < p.out_h) {
      const uint32_t halo = ptx::smem_address(halos + (i & 1) * Tile::kHaloBytes);
      int32_t acc[Tile::kMI][Tile::kNI][4];
#pragma unroll
      for (int mi = 0; mi < Tile::kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::kNI; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;
#pragma unroll
      for (int tap = 0; tap < Tile::kTaps; ++tap) {
        const int r = tap / 3, s = tap % 3;
        uint32_t b[Tile::kNI][2];
#pragma unroll
        for (int nj = 0; nj < Tile::kNI / 2; ++nj) {
          uint32_t q[4];
          ptx::ldmatrix_x4(q, b_lane + nj * 16 * Tile::kBPitch + tap * 32);
          b[2 * nj][0] = q[0], b[2 * nj][1] = q[1];
          b[2 * nj + 1][0] = q[2], b[2 * nj + 1][1] = q[3];
        }
        const uint32_t row = halo + (warp * S + r) * Tile::kRowBytes;
#pragma unroll
        for (int mi = 0; mi < Tile::kMI; ++mi) {
          uint32_t a[4];
          ptx::ldmatrix_x4(a, row + halo_column<BN, S, TW>((mi * 16 + a_row) * S + s, a_half));
#pragma unroll
          for (int ni = 0; ni < Tile::kNI; ++ni) ptx::mma_s8_16x8x32(acc[mi][ni], a, b[ni]);
        }
      }
      const int row_m = (image * p.out_h + oy) * p.out_w;
      epilogue_warp(p, acc, stage, row_m + ox0, 0, lane, epilogue, row_m + p.out_w);
    }
    __syncthreads();  // every warp is done with this patch before it is refilled
  }
  ptx::cp_async_wait<0>();
}

template <int BN, int S, int TW>
cudaError_t launch_conv_int8_halo(const ConvInt8Params& p, cudaStream_t stream) {
  using Tile = HaloTile<BN, S, TW>;
  return launch_persistent<conv_int8_halo_kernel<BN, S, TW>>(Tile::kThreads, Tile::kSmemBytes,
                                 RowTiles<Tile::kTileH, Tile::kTileW>(p).tiles, p, stream);
}

}  // namespace qyolo::cuda
