// INT8 implicit-GEMM convolution on Hopper's warpgroup MMA (wgmma, sm_90a): twice the int8
// throughput of the mma.sync path on H100/H200.
//
// A block is BM / 64 warpgroups (128 threads each) over a BM x BN output tile; warpgroup w owns
// rows 64w..64w+63 and all BN channels (m64nBNk32 instructions, accumulators in registers).
// Every thread also copies: the same persistent cp.async pipeline and swizzled [rows][64 bytes]
// tiles as the mma.sync kernel, which is exactly wgmma's 64-byte-swizzle K-major layout, so the
// tensor cores read A and B straight from shared memory. One step's wgmmas stay in flight while
// the next step is issued (the stage they read is refilled two steps later); the shared
// epilogue follows each tile, each warp owning 16 rows.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "common.cuh"
#include "conv_int8_epilogue.cuh"
#include "conv_int8_loader.cuh"
#include "conv_int8_mma.cuh"
#include "conv_int8_params.h"
#include "wgmma_s8.cuh"

namespace qyolo::cuda {

template <int BM, int BN, int STAGES>
struct WgmmaTile {
  static constexpr int kThreads = BM * 2;  // 128 threads per 64 rows
  static constexpr int kStageBytes = (BM + BN) * kTileK;  // a multiple of 1024: tiles stay aligned
  static constexpr int kEpilogueBytes = (kThreads / 32) * epilogue_stage_floats<BN>() * 4;
  // +1024: the dynamic shared memory base is aligned up to the swizzle pattern's period.
  static constexpr int kSmemBytes = STAGES * kStageBytes + kEpilogueBytes + 1024;
  static_assert(BM % 64 == 0 && BN % 16 == 0 && BN <= 256, "m64 warpgroups, n16..256");
  static_assert(STAGES >= 3, "a stage is refilled two steps after its wgmmas were issued");
};

// Two blocks per SM where the accumulators allow (<= 64 per thread): one block's epilogue and
// barriers then overlap the other's MMAs.
template <int BM, int BN, int STAGES, bool S2D>
__global__ void __launch_bounds__(BM * 2, BM* BN > 16384 ? 1 : 2)
    conv_int8_wgmma_kernel(const ConvInt8Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tile = WgmmaTile<BM, BN, STAGES>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (ptx::smem_address(smem_raw) & 1023)) & 1023);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warpgroup = tid >> 7;
  const TileWalk walk(p, BM, BN);
  StepLoader<ConvLoader<BM, BN, Tile::kThreads, S2D>, BM, BN, STAGES, Tile::kStageBytes> loads(p, tid);
  float* stage = reinterpret_cast<float*>(smem + STAGES * Tile::kStageBytes) +
                 warp * epilogue_stage_floats<BN>();

  int32_t acc[1][BN / 8][4];
#pragma unroll
  for (int f = 0; f < BN / 8; ++f)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][f][e] = 0;

#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    loads.issue(p, walk, smem);
    ptx::cp_async_commit();
  }
  int kt = 0, tile = 0;
  for (int step = 0; step < walk.steps; ++step) {
    ptx::cp_async_wait<STAGES - 3>();
    ptx::fence_proxy_async();  // this step's copies become visible to the tensor cores
    ptx::wgmma_wait<1>();      // the wgmmas of step-2 are done reading their stage...
    __syncthreads();           // ...in every warpgroup, so that stage can be refilled
    loads.issue(p, walk, smem);
    ptx::cp_async_commit();

    const uint32_t a_stage = ptx::smem_address(smem + (step % STAGES) * Tile::kStageBytes);
    const uint64_t desc_a = ptx::smem_descriptor_sw64(a_stage + warpgroup * 64 * kTileK);
    const uint64_t desc_b = ptx::smem_descriptor_sw64(a_stage + BM * kTileK);
    ptx::wgmma_fence();
    ptx::wgmma_s8<BN>(acc[0], desc_a, desc_b);
    ptx::wgmma_s8<BN>(acc[0], desc_a + 2, desc_b + 2);  // bytes 32..63 of each row
    ptx::wgmma_commit();

    if (++kt == walk.k_steps) {
      kt = 0;
      ptx::wgmma_wait<0>();
      ptx::fence_operands(acc[0]);
      int m0, n0;
      walk.origin(p, tile, BM, BN, m0, n0);
      epilogue_warp(p, acc, stage, m0 + warp * 16, n0, lane);
      ++tile;
#pragma unroll
      for (int f = 0; f < BN / 8; ++f)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][f][e] = 0;
      ptx::fence_operands(acc[0]);
    }
  }
  ptx::cp_async_wait<0>();
#endif
}

template <int BM, int BN, int STAGES, bool S2D>
cudaError_t launch_conv_int8_wgmma(const ConvInt8Params& p, cudaStream_t stream) {
  using Tile = WgmmaTile<BM, BN, STAGES>;
  auto* kernel = conv_int8_wgmma_kernel<BM, BN, STAGES, S2D>;
  static std::atomic<uint64_t> opted_in{0};
  static std::atomic<uint64_t> slots[64];
  if (cudaError_t e = opt_in_shared_memory(kernel, Tile::kSmemBytes, opted_in); e != cudaSuccess)
    return e;
  const int64_t tiles = conv_tiles(p, BM, BN);
  if (tiles > INT_MAX) return cudaErrorInvalidConfiguration;
  int64_t blocks = 0;
  if (cudaError_t e = persistent_blocks(kernel, Tile::kThreads, Tile::kSmemBytes, tiles, slots, blocks);
      e != cudaSuccess)
    return e;
  kernel<<<unsigned(blocks), Tile::kThreads, Tile::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace qyolo::cuda
