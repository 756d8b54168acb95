// What detect.cu (decode, candidates, the score sort) and detect_nms.cu (the class sort, the
// class-aware NMS and the final selection) share: the heads as the kernels read them, a row's
// fields and box decoded as the CPU decodes them, and the NMS kernels' parameters.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops_common.cuh"
#include "qyolo/status.h"

namespace qyolo::cuda::detect_internal {

constexpr int kMaxClasses = 255;  // check_heads' limit

struct SigmoidTables {
  float values[3][256];
};

struct Heads {
  HeadsArgs args;
  SigmoidTables tables;  // int8 heads only
  // The same tables in global memory (detect() writes them to its workspace first), or null.
  // A kernel parameter read at a per-thread index is a constant-memory load serialised across
  // the warp; a global one is an ordinary cached load.
  const float* device_tables = nullptr;
  int64_t rows;
  int level_rows[3];  // rows of level 0, 1, 2
};

inline Heads make_heads(const HeadsArgs& args) {
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

// Row `row` of an image (levels in order, each anchor-major, then y, x). A level's rows fit in
// an int (3 x H x W), so the divisions are 32-bit ones (a 64-bit division is a long software
// sequence, and every candidate thread runs this).
__device__ __forceinline__ RowRef locate(const Heads& h, int64_t row) {
  RowRef r{};
  int l = 0;
  while (l < 2 && row >= h.level_rows[l]) row -= h.level_rows[l++];
  const HeadTensor& t = h.args.heads[l];
  const int in_level = static_cast<int>(row);
  const int plane = t.height * t.width;
  r.level = l;
  r.anchor = in_level / plane;
  const int p = in_level - r.anchor * plane;
  r.y = p / t.width;
  r.x = p - r.y * t.width;
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
    const int q = static_cast<const int8_t*>(t.data)[at] + 128;
    return h.device_tables ? __ldg(h.device_tables + r.level * 256 + q) : h.tables.values[r.level][q];
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

struct NmsParams {
  Heads h;
  float iou_threshold;
  int max_det, max_nms, capacity;
  const int* counts;
  const uint64_t* keys;  // sorted per image: score descending, then candidate index
  uint64_t* class_keys;  // sorted per image: (class, rank) of the max_nms best
  int* class_first;      // [batch][kMaxClasses + 1]: each class's first position, total
  float4* boxes;         // [batch][max_nms], class-offset corners, in class_keys order
  uint32_t* kept;        // [batch][kept_words]: bit `rank` set when NMS keeps it
  int kept_words;
  int stage_boxes;  // how many boxes of a large class fit in shared memory
  // nms_classes_kernel's blocks: 0 small-class blocks, every block of an image walks its share of
  // the small classes then of the large ones (gridDim.x of them an image); or, with
  // small_parts > 0, the first batch x large_parts blocks (in launch order) walk only large
  // classes and the next batch x small_parts only small ones, so the long walks start first.
  int large_parts, small_parts;
  const LetterboxPlan* plans;
  DetectionBox* detections;
  int* out_counts;
};

// How the class NMS runs for one detect call: which nms_classes_kernel, its blocks an image, its
// dynamic shared memory and how many boxes of a large class it stages there.
struct NmsPlan {
  int threads = 0, parts = 0, stage_boxes = 0;
  int small_parts = 0;  // > 0: blocks split by role (NmsParams::small_parts), parts large ones
  size_t smem = 0;
};

// The plan for `a`, or the one-line error (max_nms too large for the suppression bits, a bad
// experiment override) before anything is launched.
Expected<NmsPlan> plan_nms(const DetectArgs& a);

// Step 3 and 4 on `stream`: the class sort of p.keys' max_nms best, the boxes in class order,
// the class NMS, the selection into p.detections / p.out_counts.
Status run_nms(const NmsPlan& plan, NmsParams p, int batch, cudaStream_t stream);

}  // namespace qyolo::cuda::detect_internal
