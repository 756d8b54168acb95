// YOLOv5 head decode and validation NMS on the GPU, batched, with the CPU's results:
//  1. candidates: one thread per (image, row) decodes obj and every class score (sigmoid,
//     obj * cls) and appends (score, candidate index) keys above conf;
//  2. a sort per image, score descending, ties by candidate index (the CPU's stable sort order:
//     row-major, then class): one block's radix sort over the keys' significant bits alone
//     (CompactKeys) from 16 images on, else a segmented sort;
//  3. the max_nms best of each image put in (class, rank) order (a stable counting sort by
//     class), their boxes decoded in that order, and class-aware greedy NMS with an image's classes spread over several blocks
//     (classes never suppress each other): a warp per small class, a block per large one, which
//     stops once max_det boxes ranked before its next one are kept (they are all step 4 takes);
//  4. one block per image keeps the first max_det survivors in score order: exactly the CPU's
//     first max_det.
// Every float step is written as the CPU reference computes it (_rn intrinsics, no FMA
// contraction). The sigmoid of an int8 head is a host-built table (bit-identical); for fp16
// heads it is exp in double rounded to float, which equals glibc's expf except in rare
// last-bit cases (docs/cuda_ops.md).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include "../shared_memory.h"
#include "detect_keys.h"
#include "ops_common.cuh"

namespace qyolo::cuda {

void set_default_anchors(HeadsArgs& args) {
  const float anchors[3][6] = {
      {10, 13, 16, 30, 33, 23}, {30, 61, 62, 45, 59, 119}, {116, 90, 156, 198, 373, 326}};
  for (int l = 0; l < 3; ++l) {
    args.heads[l].stride = static_cast<float>(8 << l);
    std::copy(anchors[l], anchors[l] + 6, args.heads[l].anchors);
  }
}

std::vector<float> half_sigmoid_table() {
  std::vector<float> table(65536);
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    // decode_heads() on the unpacked (half -> float) value, as the CPU path computes it.
    const float v = half_bits_to_float(static_cast<uint16_t>(bits));
    table[bits] = 1.0f / (1.0f + std::exp(-v));
  }
  return table;
}

int64_t head_rows(const HeadsArgs& args) {
  int64_t rows = 0;
  for (const HeadTensor& h : args.heads) rows += 3 * int64_t{h.height} * h.width;
  return rows;
}

namespace {

struct SigmoidTables {
  float values[3][256];
};

struct Heads {
  HeadsArgs args;
  SigmoidTables tables;  // int8 heads only
  int64_t rows;
  int level_rows[3];  // rows of level 0, 1, 2
};

Heads make_heads(const HeadsArgs& args) {
  Heads h{};
  h.args = args;
  h.rows = head_rows(args);
  for (int l = 0; l < 3; ++l) {
    h.level_rows[l] = 3 * args.heads[l].height * args.heads[l].width;
    if (args.type != HeadType::kInt8) continue;
    for (int q = -128; q < 128; ++q) {
      // decode_heads() on the dequantized (q * scale) value, as the CPU path computes it.
      const float v = static_cast<float>(q) * args.scales[l];
      h.tables.values[l][q + 128] = 1.0f / (1.0f + std::exp(-v));
    }
  }
  return h;
}

struct RowRef {
  int level, anchor, y, x;
};

__device__ __forceinline__ RowRef locate(const Heads& h, int64_t row) {
  RowRef r{};
  int l = 0;
  while (l < 2 && row >= h.level_rows[l]) row -= h.level_rows[l++];
  const HeadTensor& t = h.args.heads[l];
  const int plane = t.height * t.width;
  r.level = l;
  r.anchor = static_cast<int>(row / plane);
  const int p = static_cast<int>(row % plane);
  r.y = p / t.width;
  r.x = p % t.width;
  return r;
}

// sigmoid(head value) of field k (0..4 + classes) of row `r` of image n.
__device__ __forceinline__ float field_sigmoid(const Heads& h, int n, const RowRef& r, int k) {
  const HeadTensor& t = h.args.heads[r.level];
  const int c = r.anchor * (5 + h.args.classes) + k;
  int64_t at;
  if (t.channel_block == 0) {
    at = ((int64_t{n} * t.height + r.y) * t.width + r.x) * t.layout.stride + t.layout.offset + c;
  } else {  // N x ceil(C / b) x H x W x b
    const int b = t.channel_block, blocks = (3 * (5 + h.args.classes) + b - 1) / b;
    at = (((int64_t{n} * blocks + c / b) * t.height + r.y) * t.width + r.x) * b + c % b;
  }
  if (h.args.type == HeadType::kInt8) {
    return h.tables.values[r.level][static_cast<const int8_t*>(t.data)[at] + 128];
  }
  const uint16_t bits = static_cast<const uint16_t*>(t.data)[at];
  if (h.args.half_sigmoid) return __ldg(h.args.half_sigmoid + bits);
  const float v = ops::from_half_bits(bits);
  const float e = static_cast<float>(exp(-static_cast<double>(v)));
  return __fdiv_rn(1.0f, __fadd_rn(1.0f, e));
}

// cx, cy, w, h as decode_heads() computes them.
__device__ __forceinline__ float4 decode_box(const Heads& h, int n, const RowRef& r) {
  const HeadTensor& t = h.args.heads[r.level];
  const float s0 = field_sigmoid(h, n, r, 0), s1 = field_sigmoid(h, n, r, 1);
  const float s2 = __fmul_rn(field_sigmoid(h, n, r, 2), 2.0f);
  const float s3 = __fmul_rn(field_sigmoid(h, n, r, 3), 2.0f);
  float4 b;
  b.x =
      __fmul_rn(__fadd_rn(__fmul_rn(s0, 2.0f), __fsub_rn(static_cast<float>(r.x), 0.5f)), t.stride);
  b.y =
      __fmul_rn(__fadd_rn(__fmul_rn(s1, 2.0f), __fsub_rn(static_cast<float>(r.y), 0.5f)), t.stride);
  b.z = __fmul_rn(__fmul_rn(s2, s2), t.anchors[r.anchor * 2]);
  b.w = __fmul_rn(__fmul_rn(s3, s3), t.anchors[r.anchor * 2 + 1]);
  return b;
}

__global__ void decode_kernel(Heads h, float* out) {
  const int n = blockIdx.y;
  const int64_t row = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (row >= h.rows) return;
  const RowRef r = locate(h, row);
  const int size = 5 + h.args.classes;
  float* o = out + (int64_t{n} * h.rows + row) * size;
  const float4 b = decode_box(h, n, r);
  o[0] = b.x, o[1] = b.y, o[2] = b.z, o[3] = b.w;
  for (int k = 4; k < size; ++k) o[k] = field_sigmoid(h, n, r, k);
}


// One candidate above conf: its (score, index) key in the image's next slot.
__device__ __forceinline__ void append_candidate(int* counts, uint64_t* keys, int n, int capacity,
                                                 float score, uint32_t index) {
  const int slot = atomicAdd(&counts[n], 1);
  if (slot < capacity) keys[int64_t{n} * capacity + slot] = candidate_key(score, index);
}

// The candidates of one row read field by field (field_sigmoid): NHWC heads, and blocked heads
// whose data is not 16-byte aligned.
__device__ void row_candidates(const Heads& h, int n, int64_t row, float conf, bool multi_label,
                               int capacity, int* counts, uint64_t* keys) {
  const RowRef r = locate(h, row);
  const float obj = field_sigmoid(h, n, r, 4);
  if (!(obj > conf)) return;
  const uint32_t index = static_cast<uint32_t>(row * h.args.classes);
  if (!multi_label) {  // the first class with the highest obj * cls, as the CPU picks it
    int best = 0;
    float best_score = __fmul_rn(field_sigmoid(h, n, r, 5), obj);
    for (int c = 1; c < h.args.classes; ++c) {
      const float score = __fmul_rn(field_sigmoid(h, n, r, 5 + c), obj);
      if (score > best_score) best = c, best_score = score;
    }
    if (best_score > conf) append_candidate(counts, keys, n, capacity, best_score, index + best);
    return;
  }
  for (int c = 0; c < h.args.classes; ++c) {
    const float score = __fmul_rn(field_sigmoid(h, n, r, 5 + c), obj);
    if (score > conf) append_candidate(counts, keys, n, capacity, score, index + c);
  }
}

// The same for a blocked head (N x blocks x H x W x b): a row's obj and class fields are
// consecutive channels, b of them in one contiguous run per block, so they are read 16 bytes
// at a time (16 int8 or 8 half values; b is a multiple of that) instead of one load per field.
// The same values, tests and candidates as row_candidates.
template <class T>
__device__ void blocked_row_candidates(const Heads& h, const float (*tables)[256], int n,
                                       int64_t row, float conf, bool multi_label, int capacity,
                                       int* counts, uint64_t* keys) {
  constexpr int kPerLoad = 16 / sizeof(T);
  const RowRef r = locate(h, row);
  const HeadTensor& t = h.args.heads[r.level];
  const int fields = 5 + h.args.classes, b = t.channel_block;
  const int blocks = (3 * fields + b - 1) / b;
  const int64_t plane = int64_t{t.height} * t.width * b;
  const T* pixel = static_cast<const T*>(t.data) + int64_t{n} * blocks * plane +
                   (int64_t{r.y} * t.width + r.x) * b;
  const int c0 = r.anchor * fields + 4;  // obj, then the classes
  const int c_end = r.anchor * fields + fields;
  const uint32_t index = static_cast<uint32_t>(row * h.args.classes);
  float obj = 0.0f, best_score = 0.0f;
  int best = -1;
#pragma unroll 1
  for (int first = c0 / kPerLoad * kPerLoad; first < c_end; first += kPerLoad) {
    const uint4 v = *reinterpret_cast<const uint4*>(pixel + first / b * plane + first % b);
    const T* values = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < kPerLoad; ++i) {
      const int c = first + i;
      if (c < c0 || c >= c_end) continue;
      float sig;
      if constexpr (sizeof(T) == 1) {
        sig = tables[r.level][static_cast<int>(values[i]) + 128];
      } else if (h.args.half_sigmoid) {
        sig = __ldg(h.args.half_sigmoid + values[i]);
      } else {
        const float e = static_cast<float>(exp(-static_cast<double>(ops::from_half_bits(values[i]))));
        sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, e));
      }
      if (c == c0) {
        obj = sig;
        if (!(obj > conf)) return;
        continue;
      }
      const int k = c - c0 - 1;  // the class
      const float score = __fmul_rn(sig, obj);
      if (multi_label) {
        if (score > conf) append_candidate(counts, keys, n, capacity, score, index + k);
      } else if (best < 0 || score > best_score) {
        best = k, best_score = score;
      }
    }
  }
  if (!multi_label && best_score > conf) append_candidate(counts, keys, n, capacity, best_score, index + best);
}

// Candidates of one (image, row) a thread. `vector` (every head blocked and 16-byte aligned)
// takes blocked_row_candidates.
__global__ void candidates_kernel(Heads h, float conf, bool multi_label, bool vector, int capacity,
                                  int* counts, uint64_t* keys) {
  __shared__ float tables[3][256];  // int8 heads' sigmoid tables, read per field
  if (h.args.type == HeadType::kInt8) {
    for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x)
      tables[i / 256][i % 256] = h.tables.values[i / 256][i % 256];
    __syncthreads();
  }
  const int n = blockIdx.y;
  const int64_t row = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (row >= h.rows) return;
  if (!vector)
    row_candidates(h, n, row, conf, multi_label, capacity, counts, keys);
  else if (h.args.type == HeadType::kInt8)
    blocked_row_candidates<int8_t>(h, tables, n, row, conf, multi_label, capacity, counts, keys);
  else
    blocked_row_candidates<uint16_t>(h, tables, n, row, conf, multi_label, capacity, counts, keys);
}

// An image's candidates are sorted by one block in shared memory (135 KB) when there are at
// most this many and the GPU gives a block that much; the others go to the segmented sort.
constexpr int kScoreSortThreads = 1024;
constexpr int kScoreSortItems = 16;
constexpr int kBlockSortMax = kScoreSortThreads * kScoreSortItems;
constexpr int kBlockSortMinBatch = 16;
using ScoreSort = cub::BlockRadixSort<uint64_t, kScoreSortThreads, kScoreSortItems>;

// The segmented sort's segments: the images with more than `block_max` candidates (the others
// empty, the block sort takes them).
__global__ void segments_kernel(const int* counts, int batch, int capacity, int block_max,
                                int* begin, int* end, int* candidate_counts) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= batch) return;
  const int count = min(counts[n], capacity);
  begin[n] = n * capacity;
  end[n] = n * capacity + (count > block_max ? count : 0);
  if (candidate_counts) candidate_counts[n] = counts[n];
}

// One image's candidate keys sorted ascending (score descending, then candidate index) by one
// block, when they fit: a block radix sort in shared memory. Keys are unique, so the order in
// which they are read does not matter; read and written striped (coalesced).
__global__ void __launch_bounds__(kScoreSortThreads)
    score_sort_kernel(const int* counts, int capacity, CompactKeys compact, const uint64_t* keys_in,
                      uint64_t* keys_out) {
  extern __shared__ __align__(16) unsigned char sort_smem[];
  const int n = blockIdx.x;
  const int count = min(counts[n], capacity);
  if (count > kBlockSortMax || count == 0) return;
  const uint64_t* in = keys_in + int64_t{n} * capacity;
  uint64_t* out = keys_out + int64_t{n} * capacity;
  uint64_t keys[kScoreSortItems];
#pragma unroll
  for (int i = 0; i < kScoreSortItems; ++i) {
    const int at = i * kScoreSortThreads + threadIdx.x;
    keys[i] = at < count ? compact.pack(in[at]) : compact.padding();  // padding sorts last
  }
  auto& storage = *reinterpret_cast<ScoreSort::TempStorage*>(sort_smem);
  ScoreSort(storage).SortBlockedToStriped(keys, 0, compact.sort_bits());
#pragma unroll
  for (int i = 0; i < kScoreSortItems; ++i) {
    const int at = i * kScoreSortThreads + threadIdx.x;
    if (at < count) out[at] = compact.unpack(keys[i]);
  }
}

// Whether the current device gives score_sort_kernel its shared memory (beyond 48 KB: sm_80,
// sm_90). Where it does not, every image goes to the segmented sort.
bool score_sort_available() {
  static std::atomic<uint64_t> opted_in{0};
  if (opt_in_shared_memory(score_sort_kernel, static_cast<int>(sizeof(ScoreSort::TempStorage)),
                           opted_in) == cudaSuccess)
    return true;
  (void)cudaGetLastError();  // not an error of the next launch
  return false;
}

constexpr int kClassSortThreads = 1024;
constexpr int kClassSortWarps = kClassSortThreads / 32;
constexpr int kMaxClasses = 255;  // check_heads' limit

// The max_nms best candidates of each image as (class, rank) keys in (class, rank) order, so
// NMS can run class by class, each class's candidates in score order. One block per image, a
// stable counting sort by class of the score-sorted ranks: count each class, scan the counts
// into each class's first position, then place the ranks a chunk of 1024 at a time, each at
// its class's next position plus the number of earlier ranks of its class in the chunk (same
// warp: the lanes below it with the same class; earlier warps: their counts, scanned per
// class). The result equals sorting the (class, rank) keys. Each class's first position (and
// the total after the last class) goes to class_first[n][0..classes], NMS's class ranges.
__global__ void __launch_bounds__(kClassSortThreads)
    class_sort_kernel(const int* counts, int capacity, int max_nms, int classes,
                      const uint64_t* sorted, uint64_t* class_keys, int* class_first) {
  __shared__ int next[kMaxClasses + 1];                    // each class's next position
  __shared__ int before[kClassSortWarps][kMaxClasses + 1];  // a warp's count, then earlier warps'
  const int n = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int total = min(min(counts[n], capacity), max_nms);
  const uint64_t* keys = sorted + int64_t{n} * capacity;
  uint64_t* out = class_keys + int64_t{n} * max_nms;
  auto class_of = [&](int rank) { return static_cast<int>(static_cast<uint32_t>(keys[rank]) % classes); };

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

constexpr int kNmsThreads = 1024;  // nms_select_kernel; nms_classes_kernel's default
constexpr int kTile = 256;  // open boxes of a large class handled together

struct NmsParams {
  Heads h;
  float iou_threshold;
  int max_det, max_nms, capacity;
  const int* counts;
  const uint64_t* keys;        // sorted per image: score descending, then candidate index
  const uint64_t* class_keys;  // sorted per image: (class, rank) of the max_nms best
  const int* class_first;      // [batch][kMaxClasses + 1]: each class's first position, total
  float4* boxes;               // [batch][max_nms], class-offset corners, in class_keys order
  uint32_t* kept;              // [batch][kept_words]: bit `rank` set when NMS keeps it
  int kept_words;
  int stage_boxes;             // how many boxes of a large class fit in shared memory
  const LetterboxPlan* plans;
  DetectionBox* detections;
  int* out_counts;
};

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
// kThreads: 1024 (one block an SM), or 512 / 256 for more resident blocks (several blocks' serial
// walks overlapping on an SM); QYOLO_DETECT_NMS_THREADS picks one (detect()).
template <int kThreads>
__global__ void __launch_bounds__(kThreads, 1024 / kThreads) nms_classes_kernel(NmsParams p) {
  constexpr int kNmsWarps = kThreads / 32;
  // Dynamic shared memory: suppressed bits (by class position; each block touches only its
  // own classes' bits), then the boxes of one large class at a time.
  extern __shared__ uint32_t bits[];
  const int part = blockIdx.x, parts = gridDim.x, n = blockIdx.y;
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
    for (int c = 0; c < p.h.args.classes; ++c)
      if (range[c].y - range[c].x > 32 * kSlots && ordinal++ % parts == part) big[count++] = c;
    big_count = count;
  }

  // Small classes, one warp each, its candidates' boxes in the lanes' registers, so a kept box
  // costs a few shuffles and kSlots IoUs per lane.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int c = part * kNmsWarps + warp; c < p.h.args.classes; c += parts * kNmsWarps) {
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
      const int owner = at % 32, slot = at / 32;
      float4 bi = box[0];
      int rank_i = rank[0];
#pragma unroll
      for (int s = 1; s < kSlots; ++s)
        if (slot == s) bi = box[s], rank_i = rank[s];
      if (__shfl_sync(kAll, (suppressed_here >> slot) & 1u, owner)) continue;
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
  __shared__ int tile_at[kTile];                    // class positions of the tile's boxes
  __shared__ float4 tile_box[kTile];
  __shared__ uint32_t overlap[kTile][kTile / 32];  // row i, bit j > i: IoU(i, j) above
  __shared__ int tile_kept[kTile];                  // tile indices kept, in order
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
      for (int i = threadIdx.x; i < m; i += blockDim.x) tile_box[i] = class_boxes[tile_at[i]];
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
        // their bits of the later words in the other lanes.
        const int budget_all = p.max_det - kept_here;
        for (int w = 0; w * 32 < m && kept_n < budget_all; ++w) {
          uint32_t kept_bits = 0;
          if (lane == w) {
            const int nb = min(32, m - 32 * w);
            int budget = budget_all - kept_n;
            uint32_t rem = removed;
            for (int b = 0; b < nb && budget > 0; ++b) {
              const uint32_t row = overlap[32 * w + b][w];
              if (rem >> b & 1u) continue;
              kept_bits |= 1u << b;
              --budget;
              rem |= row;
            }
          }
          kept_bits = __shfl_sync(kAll, kept_bits, w);
          if (lane > w && lane < kTile / 32)
            for (uint32_t rest = kept_bits; rest; rest &= rest - 1)
              removed |= overlap[32 * w + __ffs(rest) - 1][lane];
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
          const int rank =
              static_cast<int>(static_cast<uint32_t>(class_keys[first + tile_at[tile_kept[q]]]));
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
// bits, 1024 words (32768 ranks) a round; boxes decoded again, mapped to the image, clipped.
__global__ void __launch_bounds__(kNmsThreads) nms_select_kernel(NmsParams p) {
  const int n = blockIdx.x;
  const int words = (nms_count(p, n) + 31) / 32;
  const uint64_t* keys = p.keys + int64_t{n} * p.capacity;
  const uint32_t* kept = p.kept + int64_t{n} * p.kept_words;
  using Scan = cub::BlockScan<int, kNmsThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int carried;
  if (threadIdx.x == 0) carried = 0;
  __syncthreads();
  for (int base = 0; base < words; base += kNmsThreads) {
    const int w = base + threadIdx.x;
    const uint32_t word = w < words ? kept[w] : 0u;
    int before = 0, round_total = 0;
    Scan(scan_storage).ExclusiveSum(__popc(word), before, round_total);
    int position = carried + before;
    for (uint32_t rest = word; rest && position < p.max_det; rest &= rest - 1, ++position) {
      const int i = w * 32 + __ffs(rest) - 1;
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
      p.detections[int64_t{n} * p.max_det + position] = d;
    }
    __syncthreads();  // every thread has read `carried` and is done with scan_storage
    if (threadIdx.x == 0) carried += round_total;
    __syncthreads();
  }
  if (threadIdx.x == 0) p.out_counts[n] = min(carried, p.max_det);
}

// The dynamic shared memory a block of `kernel` gets without opting in (48 KB less its static
// shared memory), once per kernel.
size_t nms_dynamic_smem(void (*kernel)(NmsParams)) {
  static std::mutex mutex;
  static std::vector<std::pair<void (*)(NmsParams), size_t>> known;
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& k : known)
    if (k.first == kernel) return k.second;
  cudaFuncAttributes f{};
  const size_t bytes = cudaFuncGetAttributes(&f, kernel) == cudaSuccess
                           ? static_cast<size_t>(f.maxDynamicSharedSizeBytes)
                           : size_t{32 * 1024};
  known.emplace_back(kernel, bytes);
  return bytes;
}

// Workspace layout, each part 256-byte aligned.
struct Layout {
  size_t counts, begin, end, keys_in, keys_out, class_keys, class_first, boxes, kept, sort, total;
  size_t sort_bytes;  // temporary storage of the segmented sort
};

size_t align(size_t v) { return (v + 255) / 256 * 256; }

int kept_words(const DetectArgs& a) { return (a.max_nms + 31) / 32; }

Layout layout(const DetectArgs& a) {
  const size_t batch = static_cast<size_t>(a.heads.batch);
  const size_t keys = batch * static_cast<size_t>(a.max_candidates);
  const size_t nms = batch * static_cast<size_t>(a.max_nms);
  Layout l{};
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t here = at;
    at += align(bytes);
    return here;
  };
  l.counts = take(batch * sizeof(int));
  l.begin = take(batch * sizeof(int));
  l.end = take(batch * sizeof(int));
  l.keys_in = take(keys * sizeof(uint64_t));
  l.keys_out = take(keys * sizeof(uint64_t));
  l.class_keys = take(nms * sizeof(uint64_t));
  l.class_first = take(batch * (kMaxClasses + 1) * sizeof(int));
  l.boxes = take(nms * sizeof(float4));
  l.kept = take(batch * kept_words(a) * sizeof(uint32_t));
  cub::DeviceSegmentedSort::SortKeys(nullptr, l.sort_bytes, static_cast<const uint64_t*>(nullptr),
                                     static_cast<uint64_t*>(nullptr), static_cast<int64_t>(keys),
                                     static_cast<int64_t>(batch), static_cast<const int*>(nullptr),
                                     static_cast<const int*>(nullptr));
  l.sort = take(l.sort_bytes);
  l.total = at;
  return l;
}

Status check_heads(const char* op, const HeadsArgs& a) {
  if (a.batch < 1) return invalid_argument(op, ": batch ", a.batch, " is not positive");
  if (a.classes < 1 || a.classes > kMaxClasses)
    return invalid_argument(op, ": classes ", a.classes, " (1..", kMaxClasses, " supported)");
  for (int l = 0; l < 3; ++l) {
    const HeadTensor& t = a.heads[l];
    if (t.height < 1 || t.width < 1)
      return invalid_argument(op, ": head ", l, " is ", t.height, "x", t.width);
    const char* name = l == 0 ? "head 0" : l == 1 ? "head 1" : "head 2";
    if (t.channel_block == 0) {
      QYOLO_RETURN_IF_ERROR(ops::check_slice(op, name, t.layout, 3 * (5 + a.classes), t.data));
    } else if (t.channel_block != 16 && t.channel_block != 32) {
      return invalid_argument(op, ": ", name, " channel_block ", t.channel_block,
                              " (0, 16 or 32 supported)");
    } else if (!t.data) {
      return invalid_argument(op, ": ", name, " data is null");
    }
    if (a.type == HeadType::kInt8)
      QYOLO_RETURN_IF_ERROR(ops::check_scale(op, "head scale", a.scales[l]));
  }
  if (head_rows(a) * a.classes >= (int64_t{1} << 32))
    return invalid_argument(op, ": ", head_rows(a), " rows x ", a.classes,
                            " classes do not fit 32-bit candidate indices");
  return Status::ok();
}

}  // namespace

Status decode_heads(const HeadsArgs& args, float* rows, cudaStream_t stream) {
  constexpr const char* kOp = "decode_heads";
  QYOLO_RETURN_IF_ERROR(check_heads(kOp, args));
  if (!rows) return invalid_argument(kOp, ": rows is null");
  const Heads h = make_heads(args);
  decode_kernel<<<dim3(ops::blocks_for(h.rows, 128), args.batch), 128, 0, stream>>>(h, rows);
  return ops::launched(kOp);
}

size_t detect_workspace_bytes(const DetectArgs& args) { return layout(args).total; }

Status detect(const DetectArgs& a, cudaStream_t stream) {
  constexpr const char* kOp = "detect";
  QYOLO_RETURN_IF_ERROR(check_heads(kOp, a.heads));
  if (a.max_det < 1 || a.max_nms < 1 || a.max_candidates < 1)
    return invalid_argument(kOp, ": max_det ", a.max_det, ", max_nms ", a.max_nms,
                            ", max_candidates ", a.max_candidates, " must be positive");
  if (!a.workspace || !a.detections || !a.counts)
    return invalid_argument(kOp, ": workspace, detections and counts are required");
  const Layout l = layout(a);
  const int batch = a.heads.batch;
  auto at = [&](size_t offset) { return static_cast<char*>(a.workspace) + offset; };
  int* counts = reinterpret_cast<int*>(at(l.counts));
  int* begin = reinterpret_cast<int*>(at(l.begin));
  int* end = reinterpret_cast<int*>(at(l.end));
  uint64_t* keys_in = reinterpret_cast<uint64_t*>(at(l.keys_in));
  uint64_t* keys_out = reinterpret_cast<uint64_t*>(at(l.keys_out));
  uint64_t* class_keys = reinterpret_cast<uint64_t*>(at(l.class_keys));
  int* class_first = reinterpret_cast<int*>(at(l.class_first));
  const Heads h = make_heads(a.heads);
  // The suppression bits (rounded to 16 bytes, so the staged boxes are aligned), then as many
  // boxes of a large class as fit in the dynamic shared memory every GPU gives a block without
  // opting in (48 KB less the kernel's static shared memory, about 17 KB: the class ranges and
  // the tile's boxes and IoU bits).
  static const int nms_threads = [] {
    const char* v = std::getenv("QYOLO_DETECT_NMS_THREADS");
    const int t = v ? std::atoi(v) : 1024;
    return t == 256 || t == 512 ? t : 1024;
  }();
  auto* nms_classes = nms_threads == 256   ? nms_classes_kernel<256>
                      : nms_threads == 512 ? nms_classes_kernel<512>
                                           : nms_classes_kernel<1024>;
  const size_t kSmemBytes = nms_dynamic_smem(nms_classes);
  const size_t mask_bytes = (static_cast<size_t>(kept_words(a)) + 3) / 4 * 4 * sizeof(uint32_t);
  if (mask_bytes > kSmemBytes / 2)
    return invalid_argument(kOp, ": max_nms ", a.max_nms, " needs more than ", kSmemBytes / 2048,
                            " KB of bitmasks");
  const int stage_boxes = static_cast<int>(
      std::min<size_t>((kSmemBytes - mask_bytes) / sizeof(float4), static_cast<size_t>(a.max_nms)));
  const size_t smem = mask_bytes + static_cast<size_t>(stage_boxes) * sizeof(float4);
  // The classes of an image over `parts` blocks: about four blocks an SM in all (an image's
  // large classes are its slowest part, each one block's serial walk), at most 16 an image.
  // yolov5s at batch 64 on an H200 (132 SMs; 1024-thread blocks, one resident an SM): detect
  // 0.76 ms with 8 parts, 0.80-0.82 with 5, 0.79 with 16, 1.14 with 2 (one wave of blocks).
  int device = 0, sms = 0;
  QYOLO_RETURN_IF_ERROR(check(cudaGetDevice(&device), kOp));
  QYOLO_RETURN_IF_ERROR(
      check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), kOp));
  static const int parts_override = [] {
    const char* v = std::getenv("QYOLO_DETECT_NMS_PARTS");
    return v ? std::atoi(v) : 0;
  }();
  const int parts =
      parts_override > 0 ? std::min(parts_override, 64) : std::clamp(4 * sms / batch, 1, 16);

  QYOLO_RETURN_IF_ERROR(check(cudaMemsetAsync(counts, 0, batch * sizeof(int), stream), kOp));
  bool vector = true;  // every head blocked and 16-byte aligned: 16-byte loads
  for (const HeadTensor& t : a.heads.heads)
    vector = vector && t.channel_block != 0 && reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
  candidates_kernel<<<dim3(ops::blocks_for(h.rows, 128), batch), 128, 0, stream>>>(
      h, a.conf_threshold, a.multi_label, vector, a.max_candidates, counts, keys_in);
  QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  // The block sort takes one SM an image: it pays from about 16 images on. yolov5s on an H200,
  // detect with the block sort / the segmented sort alone: batch 1 0.249 / 0.165 ms, 8 0.470 /
  // 0.449, 16 0.527 / 0.524, 32 0.628 / 0.661, 64 0.744 / 0.776.
  const bool block_sort = batch >= kBlockSortMinBatch && score_sort_available();
  segments_kernel<<<ops::blocks_for(batch, 128), 128, 0, stream>>>(
      counts, batch, a.max_candidates, block_sort ? kBlockSortMax : 0, begin, end,
      a.candidate_counts);
  QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  if (block_sort) {
    const CompactKeys compact =
        make_compact_keys(static_cast<uint64_t>(h.rows) * h.args.classes, a.conf_threshold);
    score_sort_kernel<<<batch, kScoreSortThreads, sizeof(ScoreSort::TempStorage), stream>>>(
        counts, a.max_candidates, compact, keys_in, keys_out);
    QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  }
  size_t sort_bytes = l.sort_bytes;
  QYOLO_RETURN_IF_ERROR(
      check(cub::DeviceSegmentedSort::SortKeys(at(l.sort), sort_bytes, keys_in, keys_out,
                                               int64_t{batch} * a.max_candidates, int64_t{batch},
                                               begin, end, stream),
            "detect: segmented sort"));
  class_sort_kernel<<<batch, kClassSortThreads, 0, stream>>>(
      counts, a.max_candidates, a.max_nms, h.args.classes, keys_out, class_keys, class_first);
  QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  NmsParams p{};
  p.h = h;
  p.iou_threshold = a.iou_threshold;
  p.max_det = a.max_det;
  p.max_nms = a.max_nms;
  p.capacity = a.max_candidates;
  p.counts = counts;
  p.keys = keys_out;
  p.class_keys = class_keys;
  p.class_first = class_first;
  p.boxes = reinterpret_cast<float4*>(at(l.boxes));
  p.kept = reinterpret_cast<uint32_t*>(at(l.kept));
  p.kept_words = kept_words(a);
  p.stage_boxes = stage_boxes;
  p.plans = a.plans;
  p.detections = a.detections;
  p.out_counts = a.counts;
  nms_boxes_kernel<<<dim3(ops::blocks_for(a.max_nms, 256), batch), 256, 0, stream>>>(p);
  QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  nms_classes<<<dim3(parts, batch), nms_threads, smem, stream>>>(p);
  QYOLO_RETURN_IF_ERROR(ops::launched(kOp));
  nms_select_kernel<<<batch, kNmsThreads, 0, stream>>>(p);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
