// detect's steps 3 and 4 (detect.cu has the overview): the class sort, the boxes in class order,
// the class-aware greedy NMS with an image's classes over several blocks, and the selection of
// the first max_det kept boxes in score order. Every float step as the CPU computes it.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cub/block/block_scan.cuh>

#include "detect_common.cuh"

namespace qyolo::cuda::detect_internal {
namespace {

constexpr int kClassSortThreads = 1024;
constexpr int kClassSortWarps = kClassSortThreads / 32;

// The max_nms best candidates of each image as (class, rank) keys in (class, rank) order, so
// NMS can run class by class, each class's candidates in score order. One block per image, a
// stable counting sort by class of the score-sorted ranks: count each class, scan the counts
// into each class's first position, then place the ranks a chunk of 1024 at a time, each at
// its class's next position plus the number of earlier ranks of its class in the chunk (same
// warp: the lanes below it with the same class; earlier warps: their counts, scanned per
// class). The result equals sorting the (class, rank) keys. Each class's first position (and
// the total after the last class) goes to class_first[n][0..classes], NMS's class ranges.
//
// Each chunk reads its ranks' classes from the keys again, and thread 0 / the first `classes`
// threads scan serially; the largest image's chunks, one after another, are the kernel's time
// (26 us at batch 64 on an H200, ~14 chunks for 14k candidates). A variant keeping the ranks'
// classes in shared memory with warp-parallel scans was slower (detect 0.583 against 0.545 ms at
// batch 64 on an H200) and, as written, placed some ranks wrongly; it is gone.
__global__ void __launch_bounds__(kClassSortThreads)
    class_sort_kernel(const int* counts, int capacity, int max_nms, int classes,
                      const uint64_t* sorted, uint64_t* class_keys, int* class_first) {
  __shared__ int next[kMaxClasses + 1];                     // each class's next position
  wait_for_previous_kernel();
  __shared__ int before[kClassSortWarps][kMaxClasses + 1];  // a warp's count, then earlier warps'
  const int n = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int total = min(min(counts[n], capacity), max_nms);
  const uint64_t* keys = sorted + int64_t{n} * capacity;
  uint64_t* out = class_keys + int64_t{n} * max_nms;
  auto class_of = [&](int rank) {
    return static_cast<int>(static_cast<uint32_t>(keys[rank]) % classes);
  };

  for (int c = t; c <= kMaxClasses; c += kClassSortThreads) next[c] = 0;
  __syncthreads();
  for (int r = t; r < total; r += kClassSortThreads) atomicAdd(&next[class_of(r)], 1);
  __syncthreads();
  if (t == 0) {  // exclusive scan of at most 255 counts
    int sum = 0;
    for (int c = 0; c < classes; ++c) {
      const int v = next[c];
      next[c] = sum;
      sum += v;
    }
  }
  __syncthreads();
  for (int c = t; c <= classes; c += kClassSortThreads)
    class_first[n * (kMaxClasses + 1) + c] = c < classes ? next[c] : total;
  const unsigned below = (1u << lane) - 1;
  for (int first = 0; first < total; first += kClassSortThreads) {
    for (int i = t; i < kClassSortWarps * (kMaxClasses + 1); i += kClassSortThreads)
      (&before[0][0])[i] = 0;
    __syncthreads();
    const int r = first + t;
    const int c = r < total ? class_of(r) : kMaxClasses;  // kMaxClasses: no rank
    const unsigned peers = __match_any_sync(0xffffffffu, c);
    const int lower = __popc(peers & below);
    if (lower == 0) before[warp][c] = __popc(peers);
    __syncthreads();
    int chunk = 0;  // this class's ranks in the chunk
    if (t < classes) {
      for (int w = 0; w < kClassSortWarps; ++w) {
        const int v = before[w][t];
        before[w][t] = chunk;
        chunk += v;
      }
    }
    __syncthreads();
    if (r < total) out[next[c] + before[warp][c] + lower] = (uint64_t(c) << 32) | uint32_t(r);
    __syncthreads();
    if (t < classes) next[t] += chunk;
    __syncthreads();
  }
}

// nms_select_kernel's and nms_classes_kernel's block size. For the class NMS, 256- and
// 512-thread blocks (more of them resident) were slower on an H200, detect 1.015 and 0.716 ms
// against 0.664 at batch 64 (an image's largest class is one block's walk, and fewer threads
// make it longer).
constexpr int kNmsThreads = 1024;
constexpr int kTile = 256;         // open boxes of a large class handled together

__device__ __forceinline__ int nms_count(const NmsParams& p, int n) {
  return min(min(p.counts[n], p.capacity), p.max_nms);
}

// The area of a class-offset box, as the CPU computes it.
__device__ __forceinline__ float box_area(float4 b) {
  return __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
}

// IoU(a, b) > threshold, with the IoU as the CPU computes it. Boxes that do not intersect
// (most pairs of a large class) give an intersection of exactly 0, so an IoU of 0 (or 0/0),
// never above a threshold >= 0: they skip the division.
__device__ __forceinline__ bool iou_above(float4 a, float area_a, float4 b, float threshold) {
  const float w = fmaxf(0.0f, __fsub_rn(fminf(a.z, b.z), fmaxf(a.x, b.x)));
  const float h = fmaxf(0.0f, __fsub_rn(fminf(a.w, b.w), fmaxf(a.y, b.y)));
  if ((w == 0.0f || h == 0.0f) && threshold >= 0.0f) return false;
  const float inter = __fmul_rn(w, h);
  return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_a, box_area(b)), inter)) > threshold;
}

// The boxes of the max_nms best in class_keys order (class-offset corners), so each class's
// are contiguous and a pass over them reads consecutive addresses; and the kept bits cleared.
__global__ void nms_boxes_kernel(NmsParams p) {
  wait_for_previous_kernel();
  const int n = blockIdx.y;
  const int total = nms_count(p, n);
  const uint64_t* keys = p.keys + int64_t{n} * p.capacity;
  const uint64_t* class_keys = p.class_keys + int64_t{n} * p.max_nms;
  float4* boxes = p.boxes + int64_t{n} * p.max_nms;
  constexpr float kMaxWh = 7680.0f;  // ultralytics' class offset
  const int start = blockIdx.x * blockDim.x + threadIdx.x, step = gridDim.x * blockDim.x;
  for (int w = start; w < p.kept_words; w += step) p.kept[int64_t{n} * p.kept_words + w] = 0;
  for (int i = start; i < total; i += step) {
    const int rank = static_cast<int>(static_cast<uint32_t>(class_keys[i]));
    const uint32_t index = static_cast<uint32_t>(keys[rank]);
    const int c = static_cast<int>(index % p.h.args.classes);
    const float4 b = decode_box(p.h, n, locate(p.h, index / p.h.args.classes));
    const float offset = __fmul_rn(static_cast<float>(c), kMaxWh);
    const float hw = __fdiv_rn(b.z, 2.0f), hh = __fdiv_rn(b.w, 2.0f);
    float4 box;
    box.x = __fadd_rn(__fsub_rn(b.x, hw), offset);
    box.y = __fadd_rn(__fsub_rn(b.y, hh), offset);
    box.z = __fadd_rn(__fadd_rn(b.x, hw), offset);
    box.w = __fadd_rn(__fadd_rn(b.y, hh), offset);
    boxes[i] = box;
  }
}

// Class-aware greedy NMS suppresses only within a class, so its kept set is the union of each
// class's own greedy pass, each walked in score order (a kept box suppresses the later ones of
// its class above the IoU threshold; a class stops after max_det kept). The classes of an image
// are spread over gridDim.x blocks (a row of the grid per image): small classes go to one warp
// each, large ones to one block each, round robin in class order. Which block takes a class
// changes nothing but the time. The first max_det kept boxes in score order (nms_select_kernel)
// are then exactly what one greedy pass over all classes keeps before it stops.
// kThreads: 1024, one block an SM (plan_nms says why not fewer).
template <int kThreads>
__global__ void __launch_bounds__(kThreads, 1024 / kThreads) nms_classes_kernel(NmsParams p) {
  constexpr int kNmsWarps = kThreads / 32;
  // Dynamic shared memory: suppressed bits (by class position; each block touches only its
  // own classes' bits), then the boxes of one large class at a time.
  extern __shared__ uint32_t bits[];
  wait_for_previous_kernel();
  // This block's image, its part, and which classes it walks (NmsParams::small_parts).
  int part = blockIdx.x, parts = gridDim.x, n = blockIdx.y;
  bool walk_small = true, walk_large = true;
  if (p.small_parts > 0) {
    const int linear = blockIdx.y * gridDim.x + blockIdx.x;
    const int large_blocks = gridDim.y * p.large_parts;
    walk_small = linear >= large_blocks;
    walk_large = !walk_small;
    parts = walk_large ? p.large_parts : p.small_parts;
    const int j = walk_large ? linear : linear - large_blocks;
    n = j / parts;
    part = j % parts;
    if (n >= gridDim.y) return;  // the grid's spare blocks
  }
  const int total = nms_count(p, n);
  const int words = (total + 31) / 32;
  const int all_words = (p.max_nms + 31) / 32;
  uint32_t* suppressed = bits;
  float4* staged = reinterpret_cast<float4*>(bits + (all_words + 3) / 4 * 4);
  const uint64_t* class_keys = p.class_keys + int64_t{n} * p.max_nms;
  const int* class_first = p.class_first + n * (kMaxClasses + 1);
  const float4* boxes = p.boxes + int64_t{n} * p.max_nms;
  uint32_t* kept = p.kept + int64_t{n} * p.kept_words;
  constexpr int kSlots = 4;  // classes of up to 32 * kSlots candidates go to one warp
  constexpr uint32_t kAll = 0xffffffffu;
  __shared__ int2 range[256];  // [first, last) of each class in class_keys order
  __shared__ int big[256];     // this block's large classes
  __shared__ int big_count;
  for (int i = threadIdx.x; i < words; i += blockDim.x) suppressed[i] = 0;
  for (int c = threadIdx.x; c < p.h.args.classes; c += blockDim.x)
    range[c] = make_int2(class_first[c], class_first[c + 1]);
  __syncthreads();
  if (threadIdx.x == 0) {
    int count = 0, ordinal = 0;
    for (int c = 0; c < p.h.args.classes && walk_large; ++c)
      if (range[c].y - range[c].x > 32 * kSlots && ordinal++ % parts == part) big[count++] = c;
    big_count = count;
  }

  // Small classes, one warp each, its candidates' boxes in the lanes' registers, so a kept box
  // costs a few shuffles and kSlots IoUs per lane.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int c = part * kNmsWarps + warp; walk_small && c < p.h.args.classes;
       c += parts * kNmsWarps) {
    const int first = range[c].x, k = range[c].y - range[c].x;
    if (k == 0 || k > 32 * kSlots) continue;
    float4 box[kSlots];
    int rank[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int at = lane + 32 * s;
      rank[s] = at < k ? static_cast<int>(static_cast<uint32_t>(class_keys[first + at])) : 0;
      box[s] = at < k ? boxes[first + at] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    uint32_t suppressed_here = 0;  // bit s: this lane's candidate in slot s
    int kept_here = 0;
    for (int at = 0; at < k && kept_here < p.max_det; ++at) {
      // Straight to the next open box: the lanes' open bits of this slot at or after `at`.
      const int slot = at / 32;
      const uint32_t open =
          __ballot_sync(kAll, !((suppressed_here >> slot) & 1u) && lane + 32 * slot < k) &
          (kAll << (at % 32));
      if (open == 0) {
        at = 32 * slot + 31;  // the next slot
        continue;
      }
      at = 32 * slot + __ffs(open) - 1;
      const int owner = at % 32;
      float4 bi = box[0];
      int rank_i = rank[0];
#pragma unroll
      for (int s = 1; s < kSlots; ++s)
        if (slot == s) bi = box[s], rank_i = rank[s];
      bi.x = __shfl_sync(kAll, bi.x, owner), bi.y = __shfl_sync(kAll, bi.y, owner);
      bi.z = __shfl_sync(kAll, bi.z, owner), bi.w = __shfl_sync(kAll, bi.w, owner);
      const float area_i = box_area(bi);
      rank_i = __shfl_sync(kAll, rank_i, owner);
      if (lane == 0) atomicOr(&kept[rank_i / 32], 1u << (rank_i % 32));
      ++kept_here;
#pragma unroll
      for (int s = 0; s < kSlots; ++s) {
        const int j = lane + 32 * s;
        if (j <= at || j >= k || (suppressed_here >> s & 1u)) continue;
        if (iou_above(bi, area_i, box[s], p.iou_threshold)) suppressed_here |= 1u << s;
      }
    }
  }
  __syncthreads();

  // Large classes, one after another, the whole block on each, a tile of up to kTile open boxes
  // (not suppressed by an earlier kept box) at a time: the block finds the tile's boxes (a scan
  // of the suppression bits), computes their pairwise IoU bits in parallel, warp 0 walks the
  // tile's greedy pass over those bits (a kept box removes the later ones it overlaps), and the
  // block then suppresses the class's later boxes that overlap a box the tile kept. That is the
  // greedy pass exactly, with a few barriers a tile instead of two a kept box. A class's boxes
  // are copied to shared memory when they fit (read from global memory, in order, when not).
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int tile_at[kTile];  // class positions of the tile's boxes
  __shared__ float4 tile_box[kTile];
  __shared__ int tile_rank[kTile];                 // their ranks (for the kept bits)
  __shared__ uint32_t overlap[kTile][kTile / 32];  // row i, bit j > i: IoU(i, j) above
  __shared__ int tile_kept[kTile];                 // tile indices kept, in order
  __shared__ int tile_kept_count;
  for (int g = 0; g < big_count; ++g) {
    const int first = range[big[g]].x, k = range[big[g]].y - first;
    const float4* class_boxes = boxes + first;
    __syncthreads();  // the previous class is done with the staged boxes
    if (k <= p.stage_boxes) {
      for (int i = threadIdx.x; i < k; i += blockDim.x) staged[i] = class_boxes[i];
      class_boxes = staged;
    }
    int kept_here = 0, cursor = 0;  // block-uniform; positions within the class
    while (kept_here < p.max_det && cursor < k) {
      // 0. Done once max_det boxes ranked before the class's next one are kept (by any class,
      // the other blocks' bits read as they are now: bits are only ever added, so the count
      // is at most the final one): the first max_det kept of the image then all rank before
      // it, and nothing later in this class can be among them.
      if (cursor > 0) {
        const int next_rank = static_cast<int>(static_cast<uint32_t>(class_keys[first + cursor]));
        int below = 0;
        for (int w = threadIdx.x; w * 32 < next_rank; w += blockDim.x) {
          const uint32_t word = __ldcg(kept + w);
          const int bits = next_rank - w * 32;
          below += __popc(bits >= 32 ? word : word & ((1u << bits) - 1u));
        }
        int unused = 0, kept_below = 0;
        Scan(scan_storage).ExclusiveSum(below, unused, kept_below);
        __syncthreads();  // scan_storage again
        if (kept_below >= p.max_det) break;
      }
      // 1. The next kTile open positions at or after the cursor, in order.
      int found = 0;
      for (int base = (first + cursor) / 32; base * 32 < first + k && found < kTile;
           base += kThreads) {
        const int w = base + threadIdx.x;
        uint32_t open = 0;
        if (w * 32 < first + k) {
          open = ~suppressed[w];
          const int lo = first + cursor - w * 32, hi = first + k - w * 32;  // bits [lo, hi)
          if (lo > 0) open &= lo >= 32 ? 0u : ~0u << lo;
          if (hi < 32) open &= hi <= 0 ? 0u : ~0u >> (32 - hi);
        }
        int before = 0, round_total = 0;
        Scan(scan_storage).ExclusiveSum(__popc(open), before, round_total);
        int at = found + before;
        for (uint32_t rest = open; rest && at < kTile; rest &= rest - 1, ++at)
          tile_at[at] = w * 32 + __ffs(rest) - 1 - first;
        found += round_total;
        __syncthreads();  // scan_storage again; tile_at complete
      }
      const int m = min(found, kTile);
      if (m == 0) break;
      for (int i = threadIdx.x; i < m; i += blockDim.x) {
        tile_box[i] = class_boxes[tile_at[i]];
        tile_rank[i] = static_cast<int>(static_cast<uint32_t>(class_keys[first + tile_at[i]]));
      }
      __syncthreads();
      // 2. Pairwise IoU bits of the tile.
      for (int task = threadIdx.x; task < m * (kTile / 32); task += blockDim.x) {
        const int i = task / (kTile / 32), w = task % (kTile / 32);
        const float4 bi = tile_box[i];
        const float area_i = box_area(bi);
        uint32_t row = 0;
        for (int bit = 0; bit < 32; ++bit) {
          const int j = w * 32 + bit;
          if (j > i && j < m && iou_above(bi, area_i, tile_box[j], p.iou_threshold))
            row |= 1u << bit;
        }
        overlap[i][w] = row;
      }
      __syncthreads();
      // 3. The tile's greedy pass, warp 0: lane w < kTile / 32 holds word w of the removed bits.
      if (warp == 0) {
        uint32_t removed = 0;
        int kept_n = 0;
        // Word by word: lane w decides the 32 boxes of word w alone, in registers (their
        // bits among themselves are column w of `overlap`), then the boxes it kept remove
        // their bits of the later words in the other lanes. Each lane first reads the 32 rows
        // of word w in its own column at once (independent loads, then register steps: the
        // serial walk reading shared memory a box at a time was most of this kernel's wait).
        const int budget_all = p.max_det - kept_here;
        const int column = min(lane, kTile / 32 - 1);
        for (int w = 0; w * 32 < m && kept_n < budget_all; ++w) {
          uint32_t rows[32];
#pragma unroll
          for (int b = 0; b < 32; ++b) rows[b] = overlap[32 * w + b][column];
          uint32_t kept_bits = 0;
          if (lane == w) {
            const int nb = min(32, m - 32 * w);
            int budget = budget_all - kept_n;
            uint32_t rem = removed;
#pragma unroll
            for (int b = 0; b < 32; ++b) {
              if (b < nb && budget > 0 && !(rem >> b & 1u)) {
                kept_bits |= 1u << b;
                --budget;
                rem |= rows[b];
              }
            }
          }
          kept_bits = __shfl_sync(kAll, kept_bits, w);
          if (lane > w && lane < kTile / 32) {
#pragma unroll
            for (int b = 0; b < 32; ++b)
              if (kept_bits >> b & 1u) removed |= rows[b];
          }
          const int count = __popc(kept_bits);
          if (lane < count) {  // lane q: the word's q-th kept box, so they stay in order
            uint32_t rest = kept_bits;
            for (int q = 0; q < lane; ++q) rest &= rest - 1;
            tile_kept[kept_n + lane] = 32 * w + __ffs(rest) - 1;
          }
          kept_n += count;
        }
        if (lane == 0) tile_kept_count = kept_n;
        __syncwarp();
        for (int q = lane; q < kept_n; q += 32) {
          const int rank = tile_rank[tile_kept[q]];
          atomicOr(&kept[rank / 32], 1u << (rank % 32));
        }
      }
      __syncthreads();
      const int kept_n = tile_kept_count;
      kept_here += kept_n;
      cursor = tile_at[m - 1] + 1;
      // 4. The later boxes of the class that a box kept here suppresses.
      if (kept_here < p.max_det) {
        for (int b = cursor + threadIdx.x; b < k; b += blockDim.x) {
          const int bit = first + b;
          if (suppressed[bit / 32] >> (bit % 32) & 1u) continue;
          const float4 bb = class_boxes[b];
          for (int q = 0; q < kept_n; ++q) {
            const float4 bq = tile_box[tile_kept[q]];
            if (iou_above(bq, box_area(bq), bb, p.iou_threshold)) {
              atomicOr(&suppressed[bit / 32], 1u << (bit % 32));
              break;
            }
          }
        }
      }
      __syncthreads();
    }
  }
}

// The kept ranks in order, max_det of them, one block per image: a block-wide scan of the kept
// bits, 1024 words (32768 ranks) a round, each kept rank written to its output slot; then the
// slots' boxes decoded again, mapped to the image and clipped, a slot a thread (a thread whose
// word held many kept ranks decoding them one after another was most of this kernel's time).
__global__ void __launch_bounds__(kNmsThreads) nms_select_kernel(NmsParams p) {
  wait_for_previous_kernel();
  const int n = blockIdx.x;
  const int words = (nms_count(p, n) + 31) / 32;
  const uint64_t* keys = p.keys + int64_t{n} * p.capacity;
  const uint32_t* kept = p.kept + int64_t{n} * p.kept_words;
  DetectionBox* out = p.detections + int64_t{n} * p.max_det;
  using Scan = cub::BlockScan<int, kNmsThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int carried;
  if (threadIdx.x == 0) carried = 0;
  __syncthreads();
  for (int base = 0; base < words && carried < p.max_det; base += kNmsThreads) {
    const int w = base + threadIdx.x;
    const uint32_t word = w < words ? kept[w] : 0u;
    int before = 0, round_total = 0;
    Scan(scan_storage).ExclusiveSum(__popc(word), before, round_total);
    int position = carried + before;
    for (uint32_t rest = word; rest && position < p.max_det; rest &= rest - 1, ++position)
      out[position].class_id = w * 32 + __ffs(rest) - 1;  // the rank, for the pass below
    __syncthreads();  // every thread has read `carried` and is done with scan_storage
    if (threadIdx.x == 0) carried += round_total;
    __syncthreads();
  }
  const int count = min(carried, p.max_det);
  for (int position = threadIdx.x; position < count; position += kNmsThreads) {
    const int i = out[position].class_id;
    const uint32_t index_i = static_cast<uint32_t>(keys[i]);
    const float4 b = decode_box(p.h, n, locate(p.h, index_i / p.h.args.classes));
    const float hw = __fdiv_rn(b.z, 2.0f), hh = __fdiv_rn(b.w, 2.0f);
    DetectionBox d;
    d.x1 = __fsub_rn(b.x, hw), d.y1 = __fsub_rn(b.y, hh);
    d.x2 = __fadd_rn(b.x, hw), d.y2 = __fadd_rn(b.y, hh);
    d.score = __uint_as_float(0x7fffffffu - static_cast<uint32_t>(keys[i] >> 32));
    d.class_id = static_cast<int>(index_i % p.h.args.classes);
    if (p.plans) {
      const LetterboxPlan& lp = p.plans[n];
      const float iw = static_cast<float>(lp.width), ih = static_cast<float>(lp.height);
      auto map = [](float v, float pad, float gain, float limit) {
        return fminf(fmaxf(__fdiv_rn(__fsub_rn(v, pad), gain), 0.0f), limit);
      };
      d.x1 = map(d.x1, lp.pad_x, lp.gain, iw), d.x2 = map(d.x2, lp.pad_x, lp.gain, iw);
      d.y1 = map(d.y1, lp.pad_y, lp.gain, ih), d.y2 = map(d.y2, lp.pad_y, lp.gain, ih);
    }
    out[position] = d;
  }
  if (threadIdx.x == 0) p.out_counts[n] = count;
}

// The dynamic shared memory a block of nms_classes_kernel gets without opting in (48 KB less
// its static shared memory: the class ranges, the tile's boxes and IoU bits, the scan's
// storage; 21.7 KB static with 1024 threads), read once.
size_t nms_classes_dynamic_smem() {
  static const size_t bytes = [] {
    cudaFuncAttributes f{};
    return cudaFuncGetAttributes(&f, nms_classes_kernel<kNmsThreads>) == cudaSuccess
               ? static_cast<size_t>(f.maxDynamicSharedSizeBytes)
               : size_t{32 * 1024};
  }();
  return bytes;
}

}  // namespace

// An experiment's 0 / 1 switch from the environment (`unset` when not set), or a one-line error.
Expected<bool> env_switch(const char* name, bool unset) {
  const char* value = std::getenv(name);
  if (!value) return unset;
  if (std::strcmp(value, "0") == 0) return false;
  if (std::strcmp(value, "1") == 0) return true;
  return invalid_argument("detect: ", name, "=", value, " (0 or 1)");
}

Expected<NmsPlan> plan_nms(const DetectArgs& a) {
  constexpr const char* kOp = "detect";
  // Experiments' overrides: QYOLO_DETECT_NMS_PARTS (large-class blocks an image, or blocks an
  // image without the split, 1..64) and QYOLO_DETECT_NMS_SPLIT.
  static const char* const parts_env = std::getenv("QYOLO_DETECT_NMS_PARTS");
  const int parts_override = parts_env ? std::atoi(parts_env) : 0;
  if (parts_env && (parts_override < 1 || parts_override > 64))
    return invalid_argument(kOp, ": QYOLO_DETECT_NMS_PARTS=", parts_env, " (1..64)");
  QYOLO_ASSIGN_OR_RETURN(const bool split, env_switch("QYOLO_DETECT_NMS_SPLIT", true));
  const size_t dynamic_smem = nms_classes_dynamic_smem();
  // The suppression bits (rounded to 16 bytes, so the staged boxes are aligned), then as many
  // boxes of a large class as fit in the dynamic shared memory every GPU gives a block without
  // opting in.
  const size_t kept_words = (static_cast<size_t>(a.max_nms) + 31) / 32;
  const size_t mask_bytes = (kept_words + 3) / 4 * 4 * sizeof(uint32_t);
  if (mask_bytes > dynamic_smem / 2)
    return invalid_argument(kOp, ": max_nms ", a.max_nms, " needs more than ",
                            dynamic_smem / 2048, " KB of bitmasks");
  NmsPlan plan;
  plan.threads = kNmsThreads;
  plan.stage_boxes = static_cast<int>(std::min<size_t>(
      (dynamic_smem - mask_bytes) / sizeof(float4), static_cast<size_t>(a.max_nms)));
  plan.smem = mask_bytes + static_cast<size_t>(plan.stage_boxes) * sizeof(float4);
  // The classes of an image over several blocks (an image's large classes are its slowest
  // part, each one block's serial walk). Before the split below, yolov5s at batch 64 on an H200
  // (132 SMs; 1024-thread blocks, one resident an SM): detect 0.76 ms with 8 blocks an image,
  // 0.80-0.82 with 5, 0.79 with 16, 1.14 with 2 (one wave of blocks).
  int device = 0, sms = 0;
  QYOLO_RETURN_IF_ERROR(check(cudaGetDevice(&device), kOp));
  QYOLO_RETURN_IF_ERROR(
      check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), kOp));
  // Blocks split by role (NmsParams::small_parts): first `parts` an image for the large classes
  // (an image has about six), then enough small-class blocks for a warp a class. yolov5s on an
  // H200, detect ms at batch 64 / 32 / 1: not split (8, 16, 16 blocks an image) 0.563 / 0.476 /
  // 0.120; split with 8 / 12 / 16 / 6 large-class blocks 0.557 / 0.572 / 0.585 / 0.546 at
  // batch 64, 6 also 0.434 at 32 and 0.111 at 1. QYOLO_DETECT_NMS_SPLIT=0 turns the split off
  // (then about four blocks an SM in all, at most 16 an image).
  if (split) {
    const int warps = plan.threads / 32;
    plan.small_parts = (a.heads.classes + warps - 1) / warps;
    plan.parts = parts_override > 0 ? parts_override : 6;
  } else {
    plan.parts =
        parts_override > 0 ? parts_override : std::clamp(4 * sms / a.heads.batch, 1, 16);
  }
  return plan;
}

Status run_nms(const NmsPlan& plan, NmsParams p, int batch, cudaStream_t stream) {
  constexpr const char* kOp = "detect";
  // Launches overlapped with the kernel before (launch.cuh); each kernel waits for it first.
  QYOLO_RETURN_IF_ERROR(check(launch_kernel<class_sort_kernel>(
                                  batch, kClassSortThreads, 0, stream, p.counts, p.capacity,
                                  p.max_nms, p.h.args.classes, p.keys, p.class_keys, p.class_first),
                              kOp));
  p.stage_boxes = plan.stage_boxes;
  QYOLO_RETURN_IF_ERROR(check(launch_kernel<nms_boxes_kernel>(
                                  dim3(ops::blocks_for(p.max_nms, 256), batch), 256, 0, stream, p),
                              kOp));
  p.large_parts = plan.parts;
  p.small_parts = plan.small_parts;
  QYOLO_RETURN_IF_ERROR(check(launch_kernel<nms_classes_kernel<kNmsThreads>>(
                                  dim3(plan.parts + plan.small_parts, batch), plan.threads,
                                  plan.smem, stream, p),
                              kOp));
  return check(launch_kernel<nms_select_kernel>(batch, kNmsThreads, 0, stream, p), kOp);
}

}  // namespace qyolo::cuda::detect_internal
