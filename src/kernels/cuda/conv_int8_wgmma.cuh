// INT8 implicit-GEMM convolution on Hopper's warpgroup MMA (wgmma, sm_90a): twice the int8
// throughput of the mma.sync path on H100/H200.
//
// A block is BM / 64 warpgroups (128 threads each) over a BM x BN output tile; warpgroup w owns
// rows 64w..64w+63 and all BN channels (m64nBNk32 instructions, accumulators in registers).
// The weights (and, for pointwise convolutions and the im2col variants, the input) arrive by
// the copy engine (TMA) on one mbarrier per stage; otherwise every thread copies A with the
// persistent cp.async im2col pipeline. Both fill swizzled [rows][64 bytes] tiles, exactly wgmma's 64-byte-swizzle K-major
// layout, so the tensor cores read A and B straight from shared memory. One step's wgmmas stay
// in flight while the next step is issued (the stage they read is refilled two steps later);
// the shared epilogue follows each tile, each warp owning 16 rows.
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
  // +1024: the dynamic shared memory base is aligned up to the swizzle pattern's period; then one
  // mbarrier per stage.
  static constexpr int kSmemBytes = STAGES * kStageBytes + kEpilogueBytes + 1024 + 8 * STAGES;
  static_assert(BM % 64 == 0 && BN % 16 == 0 && BN <= 256, "m64 warpgroups, n16..256");
  static_assert(STAGES >= 3, "a stage is refilled two steps after its wgmmas were issued");
};

// Blocks per SM the register cap is set for: as many as the accumulators (BN / 2 per thread) plus
// ~48 other registers and the shared memory allow. With two or more, one block's epilogue and
// barriers overlap another's MMAs.
constexpr int wgmma_min_blocks(int bm, int bn, int smem_bytes) {
  const int by_registers = 65536 / ((bn / 2 + 48) * bm * 2);
  const int by_smem = (227 * 1024) / smem_bytes;
  const int blocks = by_registers < by_smem ? by_registers : by_smem;
  return blocks < 1 ? 1 : blocks > 4 ? 4 : blocks;
}

// Where a stage's A tile comes from: every thread's cp.async im2col copies (ConvLoader), the
// copy engine's 2D tile mode (a pointwise convolution: the input is a plain [pixels][channels]
// matrix), or its im2col mode (one copy per K step: 64 channels of one tap for BM pixels).
enum AMode : int { kACopies = 0, kATma2d = 1, kATmaIm2col = 2 };

// The copy engine's side of the pipeline, run by thread 0: one stage's B tile (and, unless
// kAMode is kACopies, its A tile) per call, in step order, completing on the stage's mbarrier.
template <int BM, int BN, int STAGES, int kStageBytes, int kAMode>
struct TmaSteps {
  int step = 0, kt = 0, tile = 0;
  int c0 = 0, tap_s = 0, tap_r = 0;  // im2col: this step's channels and tap
  int w0 = 0, h0 = 0, n0 = 0;        // im2col: the tile's first pixel's window origin
  __device__ __forceinline__ void issue(const ConvInt8Params& p, const TileWalk& walk, uint8_t* stages,
                                        uint64_t* full, const CUtensorMap& map_a,
                                        const CUtensorMap& map_b) {
    if (step >= walk.steps) return;
    int m0, cn0;
    walk.origin(p, tile, BM, BN, m0, cn0);
    const int s = step % STAGES;
    uint8_t* a_tile = stages + s * kStageBytes;
    ptx::mbarrier_arrive_expect_tx(&full[s], (kAMode != kACopies ? BM * kTileK : 0) + BN * kTileK);
    if constexpr (kAMode == kATma2d) ptx::tma_load_2d(a_tile, &map_a, kt * kTileK, m0, &full[s]);
    if constexpr (kAMode == kATmaIm2col) {
      if (kt == 0) {
        int rest, ow;
        n0 = p.div_out_hw.divmod(m0, rest);
        const int oh = p.div_out_w.divmod(rest, ow);
        w0 = ow * p.stride - p.pad, h0 = oh * p.stride - p.pad;
        c0 = 0, tap_s = 0, tap_r = 0;
      }
      ptx::tma_load_im2col_4d(a_tile, &map_a, c0, w0, h0, n0, uint16_t(tap_s), uint16_t(tap_r),
                              &full[s]);
      c0 += kTileK;
      if (c0 == p.taps_channels) {
        c0 = 0;
        if (++tap_s == p.kernel) tap_s = 0, ++tap_r;
      }
    }
    ptx::tma_load_2d(a_tile + BM * kTileK, &map_b, kt * kTileK, cn0, &full[s]);
    ++step;
    if (++kt == walk.k_steps) kt = 0, ++tile;
  }
};

template <int BM, int BN, int STAGES, bool S2D, int kAMode>
__global__ void __launch_bounds__(BM * 2, wgmma_min_blocks(BM, BN, WgmmaTile<BM, BN, STAGES>::kSmemBytes))
    conv_int8_wgmma_kernel(const __grid_constant__ ConvInt8Params p, const __grid_constant__ CUtensorMap map_a,
                           const __grid_constant__ CUtensorMap map_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tile = WgmmaTile<BM, BN, STAGES>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (ptx::smem_address(smem_raw) & 1023)) & 1023);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warpgroup = tid >> 7;
  const TileWalk walk(p, BM, BN);
  wait_for_previous_kernel();
  StepLoader<ConvLoader<BM, BN, Tile::kThreads, S2D, false>, BM, BN, STAGES, Tile::kStageBytes> loads(
      p, tid);
  TmaSteps<BM, BN, STAGES, Tile::kStageBytes, kAMode> tma;
  float* stage = reinterpret_cast<float*>(smem + STAGES * Tile::kStageBytes) +
                 warp * epilogue_stage_floats<BN>();
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + STAGES * Tile::kStageBytes + Tile::kEpilogueBytes);
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) ptx::mbarrier_init(&full[s], 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  // Never written by ordinary instructions: each tile's first wgmma overwrites them (scale-d 0),
  // and they are read only after wait_group 0. With the tile loop outside the K loop, no control
  // flow merges accumulator values from an MMA with other definitions, so ptxas keeps the MMAs
  // asynchronous instead of injecting a wait at every step.
  int32_t acc[1][BN / 8][4];
  EpilogueState epilogue(p);

#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if constexpr (kAMode == kACopies) {
      loads.issue(p, walk, smem);
      ptx::cp_async_commit();
    }
    if (tid == 0) tma.issue(p, walk, smem, full, map_a, map_b);
  }
  int step = 0;
  for (int tile = 0; tile < walk.tiles; ++tile) {
    for (int kt = 0; kt < walk.k_steps; ++kt, ++step) {
      const int s = step % STAGES;
      if constexpr (kAMode == kACopies) ptx::cp_async_wait<STAGES - 3>();
      ptx::mbarrier_wait(&full[s], (step / STAGES) & 1);
      if constexpr (kAMode == kACopies) ptx::fence_proxy_async();  // copies visible to the tensor cores
      ptx::wgmma_wait<1>();  // the wgmmas of step-2 are done reading their stage...
      __syncthreads();       // ...in every warpgroup, so that stage can be refilled
      if constexpr (kAMode == kACopies) {
        loads.issue(p, walk, smem);
        ptx::cp_async_commit();
      }
      if (tid == 0) tma.issue(p, walk, smem, full, map_a, map_b);

      const uint32_t a_stage = ptx::smem_address(smem + s * Tile::kStageBytes);
      const uint64_t desc_a = ptx::smem_descriptor_sw64(a_stage + warpgroup * 64 * kTileK);
      const uint64_t desc_b = ptx::smem_descriptor_sw64(a_stage + BM * kTileK);
      ptx::wgmma_fence();
      ptx::wgmma_s8<BN>(acc[0], desc_a, desc_b, kt);
      ptx::wgmma_s8<BN>(acc[0], desc_a + 2, desc_b + 2, 1);  // bytes 32..63 of each row
      ptx::wgmma_commit();
    }
    ptx::wgmma_wait<0>();
    ptx::fence_operands(acc[0]);
    int m0, n0;
    walk.origin(p, tile, BM, BN, m0, n0);
    epilogue_warp(p, acc, stage, m0 + warp * 16, n0, lane, epilogue);
    ptx::fence_operands(acc[0]);
  }
  if constexpr (kAMode == kACopies) ptx::cp_async_wait<0>();
#endif
}

template <int BM, int BN, int STAGES, bool S2D, int kAMode>
cudaError_t launch_wgmma_kernel(const ConvInt8Params& p, const CUtensorMap& map_a,
                                const CUtensorMap& map_b, cudaStream_t stream) {
  using Tile = WgmmaTile<BM, BN, STAGES>;
  constexpr auto kernel = conv_int8_wgmma_kernel<BM, BN, STAGES, S2D, kAMode>;
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
  return launch_kernel<kernel>(dim3(unsigned(blocks)), dim3(Tile::kThreads), Tile::kSmemBytes,
                               stream, p, map_a, map_b);
}

template <int BM, int BN, int STAGES, bool S2D>
cudaError_t launch_conv_int8_wgmma(const ConvInt8Params& p, cudaStream_t stream) {
  CUtensorMap map_a{}, map_b{};
  if (cudaError_t e = encode_tma_2d(&map_b, p.weights, p.k_total, p.cout, p.k_total, kTileK, BN);
      e != cudaSuccess)
    return e;
  // A pointwise convolution's input is the A matrix itself: rows of pixels, K = its channels.
  const bool pointwise = !S2D && p.kernel == 1 && p.stride == 1 && p.pad == 0 &&
                         p.in_h == p.out_h && p.in_w == p.out_w && p.k_total == p.taps_channels;
  if constexpr (!S2D) {
    if (pointwise) {
      if (cudaError_t e = encode_tma_2d(&map_a, p.input, p.taps_channels, p.pixels, p.in_stride,
                                        kTileK, BM);
          e != cudaSuccess)
        return e;
      return launch_wgmma_kernel<BM, BN, STAGES, S2D, kATma2d>(p, map_a, map_b, stream);
    }
  }
  return launch_wgmma_kernel<BM, BN, STAGES, S2D, kACopies>(p, map_a, map_b, stream);
}

// The im2col variants (conv_int8_params.h): A and B both by the copy engine.
template <int BM, int BN, int STAGES>
cudaError_t launch_conv_int8_wgmma_im2col(const ConvInt8Params& p, cudaStream_t stream) {
  CUtensorMap map_a{}, map_b{};
  if (cudaError_t e = encode_tma_2d(&map_b, p.weights, p.k_total, p.cout, p.k_total, kTileK, BN);
      e != cudaSuccess)
    return e;
  if (p.taps_channels % kTileK != 0 || p.k_total != p.kernel * p.kernel * p.taps_channels)
    return cudaErrorInvalidValue;
  if (cudaError_t e = encode_tma_im2col(&map_a, p, BM); e != cudaSuccess) return e;
  return launch_wgmma_kernel<BM, BN, STAGES, false, kATmaIm2col>(p, map_a, map_b, stream);
}

}  // namespace qyolo::cuda
