// YOLOv5 head decode and validation NMS on the GPU, batched, with the CPU's results (steps 1 and
// 2 here, 3 and 4 in detect_nms.cu):
//  1. candidates: one thread per (image, row) decodes obj and every class score (sigmoid,
//     obj * cls) and appends (score, candidate index) keys above conf;
//  2. a sort per image, score descending, ties by candidate index (the CPU's stable sort order:
//     row-major, then class): one block's radix sort over the keys' significant bits alone
//     (CompactKeys) from 16 images on, else a segmented sort;
//  3. the max_nms best of each image put in (class, rank) order (a stable counting sort by
//     class), their boxes decoded in that order, and class-aware greedy NMS with an image's classes
//     spread over several blocks (classes never suppress each other): a warp per small class, a
//     block per large one, which stops once max_det boxes ranked before its next one are kept (they
//     are all step 4 takes);
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
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include "../shared_memory.h"
#include "detect_common.cuh"
#include "detect_keys.h"

namespace qyolo::cuda {

using namespace detect_internal;  // detect_common.cuh

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
// at a time (16 int8 or 8 half values; b is a multiple of that) instead of one load per field:
// the load with obj first, and only when obj passes the others, kLoads of them issued together
// (a row's 80 classes are 5-6 loads of int8: one wait instead of one a load). The same values,
// tests and candidates as row_candidates.
template <class T>
__device__ void blocked_row_candidates(const Heads& h, const float (*tables)[256], int n,
                                       int64_t row, float conf, bool multi_label, int capacity,
                                       int* counts, uint64_t* keys) {
  constexpr int kPerLoad = 16 / sizeof(T);
  constexpr int kLoads = 4;
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
  auto load = [&](int first) {
    return *reinterpret_cast<const uint4*>(pixel + first / b * plane + first % b);
  };
  auto sigmoid = [&](T value) {
    if constexpr (sizeof(T) == 1) {
      return tables[r.level][static_cast<int>(value) + 128];
    } else if (h.args.half_sigmoid) {
      return __ldg(h.args.half_sigmoid + value);
    } else {
      const float e = static_cast<float>(exp(-static_cast<double>(ops::from_half_bits(value))));
      return __fdiv_rn(1.0f, __fadd_rn(1.0f, e));
    }
  };
  float best_score = 0.0f;
  int best = -1;
  // Fields [first, first + kPerLoad) of v: the classes among them (c > c0).
  auto classes = [&](int first, const uint4& v, float obj) {
    const T* values = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < kPerLoad; ++i) {
      const int c = first + i;
      if (c <= c0 || c >= c_end) continue;
      const int k = c - c0 - 1;  // the class
      const float score = __fmul_rn(sigmoid(values[i]), obj);
      if (multi_label) {
        if (score > conf) append_candidate(counts, keys, n, capacity, score, index + k);
      } else if (best < 0 || score > best_score) {
        best = k, best_score = score;
      }
    }
  };
  const int first0 = c0 / kPerLoad * kPerLoad;
  const uint4 v0 = load(first0);
  T raw = 0;  // obj's value, picked with constant indices (a variable one puts v0 in memory)
  {
    const T* values = reinterpret_cast<const T*>(&v0);
#pragma unroll
    for (int i = 0; i < kPerLoad; ++i)
      if (first0 + i == c0) raw = values[i];
  }
  const float obj = sigmoid(raw);
  if (!(obj > conf)) return;
  classes(first0, v0, obj);
#pragma unroll 1
  for (int first = first0 + kPerLoad; first < c_end; first += kLoads * kPerLoad) {
    uint4 v[kLoads];
#pragma unroll
    for (int j = 0; j < kLoads; ++j)
      if (first + j * kPerLoad < c_end) v[j] = load(first + j * kPerLoad);
    // One copy of the class loop (the kernel's code size is what the instruction cache holds).
#pragma unroll 1
    for (int j = 0; j < kLoads && first + j * kPerLoad < c_end; ++j) {
      uint4 cur = v[0];
#pragma unroll
      for (int q = 1; q < kLoads; ++q)
        if (j == q) cur = v[q];
      classes(first + j * kPerLoad, cur, obj);
    }
  }
  if (!multi_label && best_score > conf)
    append_candidate(counts, keys, n, capacity, best_score, index + best);
}

// Zeroes the candidate counters and writes the int8 heads' sigmoid tables to global memory
// (Heads::device_tables), block l level l's.
__global__ void prepare_kernel(Heads h, int batch, int* counts, float* tables) {
  wait_for_previous_kernel();
  if (blockIdx.x == 0)
    for (int n = threadIdx.x; n < batch; n += blockDim.x) counts[n] = 0;
  if (tables) tables[blockIdx.x * 256 + threadIdx.x] = h.tables.values[blockIdx.x][threadIdx.x];
}

// Candidates of one (image, row) a thread. `vector` (every head blocked and 16-byte aligned)
// takes blocked_row_candidates. A block first copies the int8 heads' sigmoid tables to shared
// memory, from global memory (h.device_tables: coalesced) when prepare_kernel wrote them there.
// From the kernel parameters instead (per-thread indices: constant-memory loads serialised
// across each warp), that copy drew a third of this kernel's stall samples (ncu).
constexpr int kCandidateThreads = 256;

__global__ void __launch_bounds__(kCandidateThreads)
    candidates_kernel(Heads h, float conf, bool multi_label, bool vector, int capacity,
                      int* counts, uint64_t* keys) {
  __shared__ float tables[3][256];  // int8 heads' sigmoid tables, read per field
  wait_for_previous_kernel();
  if (h.args.type == HeadType::kInt8) {
    for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x)
      tables[i / 256][i % 256] =
          h.device_tables ? __ldg(h.device_tables + i) : h.tables.values[i / 256][i % 256];
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
  wait_for_previous_kernel();
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
  wait_for_previous_kernel();
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

// Workspace layout, each part 256-byte aligned.
struct Layout {
  size_t counts, begin, end, keys_in, keys_out, class_keys, class_first, boxes, kept, tables, sort,
      total;
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
  l.tables = take(sizeof(SigmoidTables));
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
  Heads h = make_heads(a.heads);
  float* tables =
      h.args.type == HeadType::kInt8 ? reinterpret_cast<float*>(at(l.tables)) : nullptr;
  h.device_tables = tables;
  QYOLO_ASSIGN_OR_RETURN(const NmsPlan nms, plan_nms(a));

  // Detect's kernels overlap their launches with the kernel before (launch.cuh): each waits for
  // it first. The segmented sort's kernels (cub's) are launched plainly.
  QYOLO_RETURN_IF_ERROR(
      check(launch_kernel<prepare_kernel>(3, 256, 0, stream, h, batch, counts, tables), kOp));
  bool vector = true;  // every head blocked and 16-byte aligned: 16-byte loads
  for (const HeadTensor& t : a.heads.heads)
    vector = vector && t.channel_block != 0 && reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
  QYOLO_RETURN_IF_ERROR(check(
      launch_kernel<candidates_kernel>(dim3(ops::blocks_for(h.rows, kCandidateThreads), batch),
                                       kCandidateThreads, 0, stream, h, a.conf_threshold,
                                       a.multi_label, vector, a.max_candidates, counts, keys_in),
      kOp));
  // The block sort takes one SM an image: it pays from about 16 images on. yolov5s on an H200,
  // detect with the block sort / the segmented sort alone: batch 1 0.249 / 0.165 ms, 8 0.470 /
  // 0.449, 16 0.527 / 0.524, 32 0.628 / 0.661, 64 0.744 / 0.776.
  const bool block_sort = batch >= kBlockSortMinBatch && score_sort_available();
  QYOLO_RETURN_IF_ERROR(check(
      launch_kernel<segments_kernel>(ops::blocks_for(batch, 128), 128, 0, stream, counts, batch,
                                     a.max_candidates, block_sort ? kBlockSortMax : 0, begin,
                                     end, a.candidate_counts),
      kOp));
  if (block_sort) {
    const CompactKeys compact =
        make_compact_keys(static_cast<uint64_t>(h.rows) * h.args.classes, a.conf_threshold);
    QYOLO_RETURN_IF_ERROR(check(launch_kernel<score_sort_kernel>(
                                    batch, kScoreSortThreads, sizeof(ScoreSort::TempStorage),
                                    stream, counts, a.max_candidates, compact, keys_in, keys_out),
                                kOp));
  }
  size_t sort_bytes = l.sort_bytes;
  QYOLO_RETURN_IF_ERROR(
      check(cub::DeviceSegmentedSort::SortKeys(at(l.sort), sort_bytes, keys_in, keys_out,
                                               int64_t{batch} * a.max_candidates, int64_t{batch},
                                               begin, end, stream),
            "detect: segmented sort"));
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
  p.plans = a.plans;
  p.detections = a.detections;
  p.out_counts = a.counts;
  return run_nms(nms, p, batch, stream);
}

}  // namespace qyolo::cuda
