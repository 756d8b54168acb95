// INT8 implicit-GEMM convolution on the sm_80 tensor-core path (mma.sync m16n8k32), for A100-class
// GPUs and for the small problems where a Hopper warpgroup tile would leave SMs idle.
//
// A block computes BM x BN output tiles (M = output pixels, N = output channels) with
// WARPS_M x WARPS_N warps; warps read fragments with ldmatrix and keep their accumulators in
// registers until the shared epilogue (conv_int8_epilogue.cuh). Blocks are persistent: each
// walks the tiles blockIdx.x, + gridDim.x, ..., and its STAGES-deep cp.async pipeline of 64-byte
// K steps (conv_int8_loader.cuh) runs across tile boundaries, so the next tile's data is in
// flight during this tile's last MMAs and its epilogue. YOLOv5's layers have few K steps per
// tile; without this, short-lived blocks leave the memory system idle between them.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "common.cuh"
#include "conv_int8_epilogue.cuh"
#include "conv_int8_loader.cuh"
#include "conv_int8_params.h"
#include "launch.cuh"
#include "shared_memory.h"

namespace qyolo::cuda {

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
struct MmaTile {
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kWarpM = BM / WARPS_M;
  static constexpr int kWarpN = BN / WARPS_N;
  static constexpr int kMI = kWarpM / 16;  // m16 fragments per warp
  static constexpr int kNI = kWarpN / 8;   // n8 fragments per warp
  static constexpr int kStageBytes = (BM + BN) * kTileK;
  static constexpr int kEpilogueBytes = WARPS_M * WARPS_N * epilogue_stage_floats<kWarpN>() * 4;
  // The epilogue has its own shared memory: the pipeline keeps loading the next tile meanwhile.
  static constexpr int kSmemBytes = STAGES * kStageBytes + kEpilogueBytes;
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile must be whole m16 x n16");
  static_assert(STAGES >= 2, "a pipeline needs two stages");
};

// The output tiles of one persistent block, in order, and the K steps within each.
struct TileWalk {
  int n_tiles, k_steps, tiles, steps;
  __device__ __forceinline__ TileWalk(const ConvInt8Params& p, int bm, int bn) {
    n_tiles = (p.cout + bn - 1) / bn;
    k_steps = (p.k_total + kTileK - 1) / kTileK;
    const int total = ((p.pixels + bm - 1) / bm) * n_tiles;
    tiles = (total - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
    steps = tiles * k_steps;
  }
  // Output-channel tiles vary fastest: the blocks sharing input rows run together, and all but
  // the first read those rows from L2.
  __device__ __forceinline__ void origin(const ConvInt8Params& p, int i, int bm, int bn, int& m0,
                                         int& n0) const {
    int n_tile;
    m0 = p.div_n_tiles.divmod(int(blockIdx.x + i * gridDim.x), n_tile) * bm;
    n0 = n_tile * bn;
  }
};

// Issues the copies of the block's K steps in order, one step per call, moving to the next
// tile when one is complete.
template <typename Loader, int BM, int BN, int STAGES, int kStageBytes>
struct StepLoader {
  Loader loader;
  int step = 0, kt = 0, tile = 0;
  __device__ __forceinline__ StepLoader(const ConvInt8Params& p, int tid) : loader(p, tid) {}
  __device__ __forceinline__ void issue(const ConvInt8Params& p, const TileWalk& walk,
                                        uint8_t* stages) {
    if (step >= walk.steps) return;
    if (kt == 0) {
      int m0, n0;
      walk.origin(p, tile, BM, BN, m0, n0);
      loader.begin_tile(p, m0, n0);
    }
    uint8_t* a_tile = stages + (step % STAGES) * kStageBytes;
    loader.load(p, a_tile, a_tile + BM * kTileK, kt);
    ++step;
    if (++kt == walk.k_steps) kt = 0, ++tile;
  }
};

// The mma.sync kernel's work, with split K: a unit is one output tile's K steps [k0, k1), all
// of them (split_k 1) or part u % split_k of tile u / split_k; a persistent block takes the
// units blockIdx.x, + gridDim.x, ... The host keeps split_k <= the K steps, so no part is empty.
struct SplitWalk {
  int k_steps, split, units, steps;
  __device__ __forceinline__ SplitWalk(const ConvInt8Params& p, int bm, int bn) {
    const int n_tiles = (p.cout + bn - 1) / bn;
    k_steps = (p.k_total + kTileK - 1) / kTileK;
    split = p.split_k;
    const int total = ((p.pixels + bm - 1) / bm) * n_tiles * split;
    units = (total - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
    steps = units * k_steps;
    if (split > 1) {
      steps = 0;
      for (int i = 0; i < units; ++i) {
        int k0, k1;
        range(i, k0, k1);
        steps += k1 - k0;
      }
    }
  }
  __device__ __forceinline__ int unit(int i) const { return int(blockIdx.x) + i * int(gridDim.x); }
  __device__ __forceinline__ int tile(int i) const { return split == 1 ? unit(i) : unit(i) / split; }
  __device__ __forceinline__ int part(int i) const { return split == 1 ? 0 : unit(i) % split; }
  __device__ __forceinline__ void range(int i, int& k0, int& k1) const {
    const int q = part(i);
    k0 = q * k_steps / split;
    k1 = (q + 1) * k_steps / split;
  }
  // Output-channel tiles vary fastest (as TileWalk).
  __device__ __forceinline__ void origin(const ConvInt8Params& p, int i, int bm, int bn, int& m0,
                                         int& n0) const {
    int n_tile;
    m0 = p.div_n_tiles.divmod(tile(i), n_tile) * bm;
    n0 = n_tile * bn;
  }
};

// StepLoader over a SplitWalk's units.
template <typename Loader, int BM, int BN, int STAGES, int kStageBytes>
struct SplitStepLoader {
  Loader loader;
  int step = 0, kt = 0, k_end = 0, unit = 0;
  __device__ __forceinline__ SplitStepLoader(const ConvInt8Params& p, int tid) : loader(p, tid) {}
  __device__ __forceinline__ void issue(const ConvInt8Params& p, const SplitWalk& walk,
                                        uint8_t* stages) {
    if (step >= walk.steps) return;
    if (kt == k_end) {
      int m0, n0;
      walk.range(unit, kt, k_end);
      walk.origin(p, unit, BM, BN, m0, n0);
      loader.begin_tile(p, m0, n0, kt);
      ++unit;
    }
    uint8_t* a_tile = stages + (step % STAGES) * kStageBytes;
    loader.load(p, a_tile, a_tile + BM * kTileK, kt);
    ++step;
    ++kt;
  }
};

// Split K's hand-over at the end of a unit: every block stores its int32 partial sums (each
// thread its own accumulators, kThreads apart, so the stores coalesce), then counts itself in
// at the tile's counter; the last of the tile's split_k blocks resets the counter for the next
// launch, adds the others' partials to its own and returns true (it runs the epilogue). Integer
// sums: the result is the unsplit one exactly, in any order of arrival.
template <int kThreads, int kMI, int kNI>
__device__ __forceinline__ bool split_k_hand_over(const ConvInt8Params& p,
                                                  int32_t (&acc)[kMI][kNI][4], int tile, int part,
                                                  int tid, int* last_flag) {
  constexpr int kVectors = kMI * kNI;
  const int64_t tile_base = int64_t{tile} * p.split_k * kVectors * kThreads + tid;
  int4* mine = p.split_partials + tile_base + int64_t{part} * kVectors * kThreads;
#pragma unroll
  for (int mi = 0; mi < kMI; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNI; ++ni)
      __stcg(mine + (mi * kNI + ni) * kThreads,
             make_int4(acc[mi][ni][0], acc[mi][ni][1], acc[mi][ni][2], acc[mi][ni][3]));
  __threadfence();  // the partials before the count
  __syncthreads();
  if (tid == 0) {
    const bool last = atomicAdd(p.split_counters + tile, 1) == p.split_k - 1;
    if (last) p.split_counters[tile] = 0;
    *last_flag = last;
  }
  __syncthreads();
  if (!*last_flag) return false;
  __threadfence();  // the count before the others' partials
  for (int q = 0; q < p.split_k; ++q) {
    if (q == part) continue;
    const int4* other = p.split_partials + tile_base + int64_t{q} * kVectors * kThreads;
#pragma unroll
    for (int mi = 0; mi < kMI; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNI; ++ni) {
        const int4 v = __ldcg(other + (mi * kNI + ni) * kThreads);
        acc[mi][ni][0] += v.x, acc[mi][ni][1] += v.y, acc[mi][ni][2] += v.z, acc[mi][ni][3] += v.w;
      }
  }
  return true;
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool S2D>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32, 1)
    conv_int8_mma_kernel(const __grid_constant__ ConvInt8Params p) {
  using Tile = MmaTile<BM, BN, WARPS_M, WARPS_N, STAGES>;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ int split_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const SplitWalk walk(p, BM, BN);
  wait_for_previous_kernel();
  SplitStepLoader<ConvLoader<BM, BN, Tile::kThreads, S2D>, BM, BN, STAGES, Tile::kStageBytes> loads(
      p, tid);
  float* stage = reinterpret_cast<float*>(smem + STAGES * Tile::kStageBytes) +
                 warp * epilogue_stage_floats<Tile::kWarpN>();

  int32_t acc[Tile::kMI][Tile::kNI][4];
  EpilogueState epilogue(p);
#pragma unroll
  for (int mi = 0; mi < Tile::kMI; ++mi)
#pragma unroll
    for (int ni = 0; ni < Tile::kNI; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    loads.issue(p, walk, smem);
    ptx::cp_async_commit();  // empty groups keep the wait count below uniform
  }
  int unit = 0, left = 0;  // the unit being computed, and its K steps still to come
  {
    int k0, k1;
    walk.range(0, k0, k1);
    left = k1 - k0;
  }
  for (int step = 0; step < walk.steps; ++step) {
    ptx::cp_async_wait<STAGES - 2>();
    __syncthreads();  // step's stage is visible to all; the previous step's is free to refill
    loads.issue(p, walk, smem);
    ptx::cp_async_commit();

    const uint32_t a_base = ptx::smem_address(smem + (step % STAGES) * Tile::kStageBytes);
    const uint32_t b_base = a_base + BM * kTileK;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t a[Tile::kMI][4], b[Tile::kNI][2];
#pragma unroll
      for (int mi = 0; mi < Tile::kMI; ++mi) {
        const int row = warp_m * Tile::kWarpM + mi * 16 + (lane & 15);
        ptx::ldmatrix_x4(a[mi], a_base + swizzle(row, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int nj = 0; nj < Tile::kNI / 2; ++nj) {
        const int row = warp_n * Tile::kWarpN + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        uint32_t t[4];
        ptx::ldmatrix_x4(t, b_base + swizzle(row, ks * 2 + ((lane >> 3) & 1)));
        b[2 * nj][0] = t[0], b[2 * nj][1] = t[1];
        b[2 * nj + 1][0] = t[2], b[2 * nj + 1][1] = t[3];
      }
#pragma unroll
      for (int mi = 0; mi < Tile::kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::kNI; ++ni) ptx::mma_s8_16x8x32(acc[mi][ni], a[mi], b[ni]);
    }

    if (--left == 0) {
      const bool finish = walk.split == 1 ||
                          split_k_hand_over<Tile::kThreads>(p, acc, walk.tile(unit),
                                                            walk.part(unit), tid, &split_last);
      if (finish) {
        int m0, n0;
        walk.origin(p, unit, BM, BN, m0, n0);
        epilogue_warp(p, acc, stage, m0 + warp_m * Tile::kWarpM, n0 + warp_n * Tile::kWarpN,
                      lane, epilogue);
      }
      if (++unit < walk.units) {
        int k0, k1;
        walk.range(unit, k0, k1);
        left = k1 - k0;
      }
#pragma unroll
      for (int mi = 0; mi < Tile::kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::kNI; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;
    }
  }
  ptx::cp_async_wait<0>();
}

// Blocks to launch for a persistent kernel: every SM filled as far as occupancy allows, never
// more blocks than tiles. The occupancy is read once per device.
template <typename Kernel>
cudaError_t persistent_blocks(Kernel* kernel, int threads, int smem_bytes, int64_t tiles,
                              std::atomic<uint64_t>* cache, int64_t& blocks) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  uint64_t slots = cache[device & 63].load(std::memory_order_relaxed);
  if (slots == 0) {
    int per_sm = 0, sms = 0;
    if (cudaError_t e =
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem_bytes);
        e != cudaSuccess)
      return e;
    if (cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
        e != cudaSuccess)
      return e;
    slots = uint64_t(per_sm > 0 ? per_sm : 1) * uint64_t(sms);
    cache[device & 63].store(slots, std::memory_order_relaxed);
  }
  blocks = tiles < int64_t(slots) ? tiles : int64_t(slots);
  return cudaSuccess;
}

inline int64_t conv_tiles(const ConvInt8Params& p, int bm, int bn) {
  return int64_t{(p.pixels + bm - 1) / bm} * ((p.cout + bn - 1) / bn);
}

// Launches a persistent kernel of `threads` threads and `smem_bytes` of shared memory over
// `tiles` tiles: the shared-memory opt-in and the occupancy query once per device and kernel
// (the kernel is a template argument so that each has its own cache).
template <auto kernel>
cudaError_t launch_persistent(int threads, int smem_bytes, int64_t tiles, const ConvInt8Params& p,
                              cudaStream_t stream) {
  static std::atomic<uint64_t> opted_in{0};
  static std::atomic<uint64_t> slots[64];
  if (cudaError_t e = opt_in_shared_memory(kernel, smem_bytes, opted_in); e != cudaSuccess) return e;
  if (tiles > INT_MAX) return cudaErrorInvalidConfiguration;
  int64_t blocks = 0;
  if (cudaError_t e = persistent_blocks(kernel, threads, smem_bytes, tiles, slots, blocks);
      e != cudaSuccess)
    return e;
  return launch_kernel<kernel>(dim3(unsigned(blocks)), dim3(threads), smem_bytes, stream, p);
}

// The output tiles of the direct kernels (conv_int8_stem.cuh, conv_int8_halo.cuh): kTileH rows x
// kTileW columns of one image, columns fastest, then rows, then images.
template <int kTileH, int kTileW>
struct RowTiles {
  int tiles_x, tiles_y, tiles;
  __host__ __device__ explicit RowTiles(const ConvInt8Params& p)
      : tiles_x((p.out_w + kTileW - 1) / kTileW), tiles_y((p.out_h + kTileH - 1) / kTileH),
        tiles((p.pixels / (p.out_h * p.out_w)) * tiles_x * tiles_y) {}
  __device__ __forceinline__ void origin(int t, int& image, int& oy0, int& ox0) const {
    const int tx = t % tiles_x, rest = t / tiles_x;
    const int ty = rest % tiles_y;
    image = rest / tiles_y;
    oy0 = ty * kTileH, ox0 = tx * kTileW;
  }
};

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool S2D>
cudaError_t launch_conv_int8_mma(const ConvInt8Params& p, cudaStream_t stream) {
  using Tile = MmaTile<BM, BN, WARPS_M, WARPS_N, STAGES>;
  return launch_persistent<conv_int8_mma_kernel<BM, BN, WARPS_M, WARPS_N, STAGES, S2D>>(
      Tile::kThreads, Tile::kSmemBytes, conv_tiles(p, BM, BN) * p.split_k, p, stream);
}

}  // namespace qyolo::cuda
