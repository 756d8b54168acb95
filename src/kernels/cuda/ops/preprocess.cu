// uint8 RGB images of any size -> ultralytics' letterbox on a 114-gray canvas, /255, quantized
// to int8:hwc4 (or fp16/fp32 NCHW), in one kernel. The resize reproduces src/vision/resize.cpp
// (OpenCV's fixed-point INTER_LINEAR and INTER_AREA) operation for operation, so the output is
// bit-identical to the CPU path; the double and float steps use _rn intrinsics to keep nvcc from
// fusing them into FMAs, which would change roundings.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ops_common.cuh"

namespace qyolo::cuda {

LetterboxPlan letterbox_plan(int width, int height, int size, int canvas) {
  LetterboxPlan p;
  p.width = width;
  p.height = height;
  p.size = size;
  p.canvas = canvas;
  const double r = static_cast<double>(size) / std::max(width, height);
  p.resized_width = width;
  p.resized_height = height;
  if (r != 1.0) {
    p.resized_width = static_cast<int>(std::ceil(width * r));
    p.resized_height = static_cast<int>(std::ceil(height * r));
  }
  p.gain = static_cast<float>(static_cast<double>(p.resized_height) / height);
  const double dw = (canvas - p.resized_width) / 2.0, dh = (canvas - p.resized_height) / 2.0;
  p.pad_x = static_cast<float>(dw);
  p.pad_y = static_cast<float>(dh);
  p.left = static_cast<int>(std::round(dw - 0.1));
  p.top = static_cast<int>(std::round(dh - 0.1));
  return p;
}

namespace {

constexpr int kMaxImagesPerLaunch = 64;  // the by-value batch and level table: under 6 KB of parameters
constexpr int kGroup = 4;                 // consecutive canvas pixels of one row per thread
constexpr int kThreads = 256;

enum Mode : int { kCopy = 0, kLinear = 1, kAreaInteger = 2, kArea = 3 };

struct ImageDesc {
  const uint8_t* pixels;
  double scale_x, scale_y;  // width / resized_width, height / resized_height (IEEE, on the host)
  int row_bytes, width, height, resized_width, resized_height, left, top, mode, kx, ky;
  int slot;  // the image's place in the output batch
};

struct Batch {
  ImageDesc images[kMaxImagesPerLaunch];
};

__device__ __forceinline__ int to_coef(float weight) {
  const int v = static_cast<int>(rintf(__fmul_rn(weight, 2048.0f)));
  return min(max(v, -32768), 32767);
}

// INTER_LINEAR's vertical step for one destination row, shared by the row's pixels: the two
// source rows and their weights.
struct LinearRow {
  const uint8_t* s0;
  const uint8_t* s1;
  int b0, b1;
};

__device__ __forceinline__ LinearRow linear_row(const ImageDesc& im, int dy) {
  float fy = static_cast<float>(__dadd_rn(__dmul_rn(dy + 0.5, im.scale_y), -0.5));
  const int sy = static_cast<int>(floorf(fy));
  fy = __fsub_rn(fy, static_cast<float>(sy));
  auto source_row = [&](int y) {
    return im.pixels + static_cast<size_t>(min(max(y, 0), im.height - 1)) * im.row_bytes;
  };
  return {source_row(sy), source_row(sy + 1), to_coef(__fsub_rn(1.0f, fy)), to_coef(fy)};
}

// The three channels of one resized pixel: its source columns and weights once, then the
// channels.
__device__ __forceinline__ void linear_pixel(const ImageDesc& im, const LinearRow& r, int dx,
                                             int (&rgb)[3]) {
  float fx = static_cast<float>(__dadd_rn(__dmul_rn(dx + 0.5, im.scale_x), -0.5));
  int sx = static_cast<int>(floorf(fx));
  fx = __fsub_rn(fx, static_cast<float>(sx));
  if (sx < 0) fx = 0, sx = 0;
  if (sx >= im.width - 1) fx = 0, sx = im.width - 1;
  const int a0 = to_coef(__fsub_rn(1.0f, fx)), a1 = to_coef(fx);
  const int next = min(sx + 1, im.width - 1);
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const int row0 = r.s0[sx * 3 + c] * a0 + r.s0[next * 3 + c] * a1;
    const int row1 = r.s1[sx * 3 + c] * a0 + r.s1[next * 3 + c] * a1;
    const int v = (((r.b0 * (row0 >> 4)) >> 16) + ((r.b1 * (row1 >> 4)) >> 16) + 2) >> 2;
    rgb[c] = min(max(v, 0), 255);
  }
}

__device__ void area_integer_pixel(const ImageDesc& im, int dx, int dy, int (&rgb)[3]) {
  int sum[3] = {0, 0, 0};
  for (int y = 0; y < im.ky; ++y) {
    const uint8_t* s =
        im.pixels + static_cast<size_t>(dy * im.ky + y) * im.row_bytes + (dx * im.kx) * 3;
    for (int x = 0; x < im.kx; ++x)
#pragma unroll
      for (int c = 0; c < 3; ++c) sum[c] += s[x * 3 + c];
  }
  const float scale = __fdiv_rn(1.0f, static_cast<float>(im.kx * im.ky));
#pragma unroll
  for (int c = 0; c < 3; ++c)
    rgb[c] = im.kx == 2 && im.ky == 2
                 ? (sum[c] + 2) >> 2
                 : min(max(static_cast<int>(rintf(__fmul_rn(static_cast<float>(sum[c]), scale))),
                           0),
                       255);
}

// OpenCV's computeResizeAreaTab for one destination index: a partial first cell, whole cells,
// a partial last cell.
struct AreaSpan {
  int first_partial, sx1, sx2, last_partial;  // first_partial: source index or -1
  float first_alpha, full_alpha, last_alpha;
};

__device__ AreaSpan area_span(int d, int src_size, double scale) {
  AreaSpan a;
  const double fsx1 = __dmul_rn(d, scale), fsx2 = __dadd_rn(fsx1, scale);
  const double cell = fmin(scale, __dsub_rn(src_size, fsx1));
  int sx1 = static_cast<int>(ceil(fsx1)), sx2 = static_cast<int>(floor(fsx2));
  sx2 = min(sx2, src_size - 1);
  sx1 = min(sx1, sx2);
  a.sx1 = sx1;
  a.sx2 = sx2;
  a.first_partial = __dsub_rn(sx1, fsx1) > 1e-3 ? sx1 - 1 : -1;
  a.first_alpha = static_cast<float>(__ddiv_rn(__dsub_rn(sx1, fsx1), cell));
  a.full_alpha = static_cast<float>(__ddiv_rn(1.0, cell));
  a.last_partial = __dsub_rn(fsx2, sx2) > 1e-3 ? sx2 : -1;
  a.last_alpha = static_cast<float>(__ddiv_rn(fmin(fmin(__dsub_rn(fsx2, sx2), 1.0), cell), cell));
  return a;
}

__device__ float area_row(const uint8_t* s, const AreaSpan& a, int c) {
  float buf = 0.0f;
  if (a.first_partial >= 0)
    buf = __fadd_rn(buf, __fmul_rn(static_cast<float>(s[a.first_partial * 3 + c]), a.first_alpha));
  for (int x = a.sx1; x < a.sx2; ++x)
    buf = __fadd_rn(buf, __fmul_rn(static_cast<float>(s[x * 3 + c]), a.full_alpha));
  if (a.last_partial >= 0)
    buf = __fadd_rn(buf, __fmul_rn(static_cast<float>(s[a.last_partial * 3 + c]), a.last_alpha));
  return buf;
}

__device__ void area_pixel(const ImageDesc& im, int dx, int dy, int (&rgb)[3]) {
  const AreaSpan ax = area_span(dx, im.width, im.scale_x);
  const AreaSpan ay = area_span(dy, im.height, im.scale_y);
  auto row = [&](int y) { return im.pixels + static_cast<size_t>(y) * im.row_bytes; };
  for (int c = 0; c < 3; ++c) {
    float sum = 0.0f;
    if (ay.first_partial >= 0)
      sum = __fadd_rn(sum, __fmul_rn(ay.first_alpha, area_row(row(ay.first_partial), ax, c)));
    for (int y = ay.sx1; y < ay.sx2; ++y)
      sum = __fadd_rn(sum, __fmul_rn(ay.full_alpha, area_row(row(y), ax, c)));
    if (ay.last_partial >= 0)
      sum = __fadd_rn(sum, __fmul_rn(ay.last_alpha, area_row(row(ay.last_partial), ax, c)));
    rgb[c] = min(max(static_cast<int>(rintf(sum)), 0), 255);
  }
}

// The output value of every 8-bit level p: p / 255 (IEEE division), then quantized with the
// input scale for int8:hwc4 (one byte each, four to a word), as bits for fp16, as a float for
// fp32. Computed once on the host (the same IEEE operations, so the same bits) and passed with
// the launch; each block copies it to shared memory, where a warp's lookups go (int8's 64 words
// meet at most two words in a bank).
struct Levels {
  uint32_t words[256];
};

Levels level_table(PreprocessOutput format, float input_scale) {
  Levels t{};
  for (int p = 0; p < 256; ++p) {
    const float v = static_cast<float>(p) / 255.0f;
    if (format == PreprocessOutput::kInt8Hwc4) {
      const float q = std::fmin(std::fmax(std::rint(v / input_scale), -128.0f), 127.0f);
      t.words[p / 4] |= uint32_t{static_cast<uint8_t>(static_cast<int8_t>(q))} << (8 * (p % 4));
    } else if (format == PreprocessOutput::kFloat16Nchw) {
      t.words[p] = __half_as_ushort(__float2half_rn(v));
    } else {
      std::memcpy(&t.words[p], &v, 4);
    }
  }
  return t;
}

// Groups a thread takes, one block-width apart. A launch that another follows may take more
// (QYOLO_PREPROCESS_OVERLAP_GROUPS, 1..64), so that its blocks all start in the first wave and
// the next launch runs beside it for longer. Measured on an H200 (real images, two modes) and
// left at 4: 16 gave 0.059 ms against 0.061 at batch 64 (2, 8, 32: 0.062, 0.061, 0.074), but
// 0.040 against 0.035 at batch 32 (fewer, longer-running threads where 4 already fit a wave).
constexpr int kGroupsPerThread = 4;

// kGroup consecutive pixels of one canvas row a thread: the row's letterbox test and vertical
// resize step once, each inside pixel's source values, the group's output through the level
// table in one vector store per channel plane where the canvas row allows it (`vector`: canvas
// a multiple of kGroup and the output 16-byte aligned). One kernel per resize mode, over the
// batch's images of that mode: the copy kernel stays small enough in registers for full
// occupancy (the area modes' double-precision spans took the one kernel for all modes to 80
// registers, three blocks an SM).
template <PreprocessOutput kFormat, int kMode>
__global__ void __launch_bounds__(kThreads)
    preprocess_kernel(const __grid_constant__ Batch batch, const __grid_constant__ Levels levels,
                      int canvas, int groups_per_row, bool vector, void* output, int per_thread) {
  constexpr bool kBytes = kFormat == PreprocessOutput::kInt8Hwc4;
  __shared__ uint32_t table[kBytes ? 64 : 256];
  for (int p = threadIdx.x; p < (kBytes ? 64 : 256); p += blockDim.x) table[p] = levels.words[p];
  __syncthreads();
  let_next_kernel_start();  // the next mode's images, if any, need nothing of these
  const ImageDesc& im = batch.images[blockIdx.y];
  const size_t plane = static_cast<size_t>(canvas) * canvas;
  const int groups = canvas * groups_per_row;
#pragma unroll 1
  for (int it = 0; it < per_thread; ++it) {
    const int group = (blockIdx.x * per_thread + it) * kThreads + threadIdx.x;
    if (group >= groups) break;
    const int y = group / groups_per_row, x0 = (group - y * groups_per_row) * kGroup;
    const int count = min(kGroup, canvas - x0);
    const int dy = y - im.top;
    const bool row_inside = dy >= 0 && dy < im.resized_height;
    int rgb[kGroup][3];
#pragma unroll
    for (int k = 0; k < kGroup; ++k) rgb[k][0] = rgb[k][1] = rgb[k][2] = 114;
    if (row_inside) {
      const int dx0 = x0 - im.left;
      // A copied group wholly inside the row, with the image row going on for two more
      // pixels: its 12 bytes from four aligned words (which end at most 4 bytes past them),
      // not twelve byte loads.
      const bool words = kMode == kCopy && count == kGroup && dx0 >= 0 && dx0 + kGroup + 2 <= im.width;
      if constexpr (kMode == kCopy) {
        const uint8_t* copy_row = im.pixels + static_cast<size_t>(dy) * im.row_bytes;
        if (words) {
          const uint8_t* src = copy_row + dx0 * 3;
          const uint32_t* w =
              reinterpret_cast<const uint32_t*>(reinterpret_cast<uintptr_t>(src) & ~uintptr_t{3});
          const unsigned shift = (reinterpret_cast<uintptr_t>(src) & 3) * 8;
          const uint32_t a0 = __ldg(w), a1 = __ldg(w + 1), a2 = __ldg(w + 2), a3 = __ldg(w + 3);
          const uint32_t u[3] = {__funnelshift_r(a0, a1, shift), __funnelshift_r(a1, a2, shift),
                                 __funnelshift_r(a2, a3, shift)};
#pragma unroll
          for (int k = 0; k < kGroup; ++k)
#pragma unroll
            for (int c = 0; c < 3; ++c)
              rgb[k][c] = (u[(3 * k + c) / 4] >> (8 * ((3 * k + c) % 4))) & 0xff;
        } else {
#pragma unroll
          for (int k = 0; k < kGroup; ++k) {
            const int dx = dx0 + k;
            if (k >= count || dx < 0 || dx >= im.resized_width) continue;
#pragma unroll
            for (int c = 0; c < 3; ++c) rgb[k][c] = copy_row[dx * 3 + c];
          }
        }
      } else {
        LinearRow lr{};
        if constexpr (kMode == kLinear) lr = linear_row(im, dy);
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          const int dx = dx0 + k;
          if (k >= count || dx < 0 || dx >= im.resized_width) continue;
          if constexpr (kMode == kLinear) linear_pixel(im, lr, dx, rgb[k]);
          else if constexpr (kMode == kAreaInteger) area_integer_pixel(im, dx, dy, rgb[k]);
          else area_pixel(im, dx, dy, rgb[k]);
        }
      }
    }
    const size_t slot = static_cast<size_t>(im.slot);
    const size_t at = static_cast<size_t>(y) * canvas + x0;
    if constexpr (kFormat == PreprocessOutput::kInt8Hwc4) {
      const uint8_t* level = reinterpret_cast<const uint8_t*>(table);
      uint32_t v[kGroup];
#pragma unroll
      for (int k = 0; k < kGroup; ++k)
        v[k] = uint32_t{level[rgb[k][0]]} | uint32_t{level[rgb[k][1]]} << 8 |
               uint32_t{level[rgb[k][2]]} << 16;
      uint32_t* out = static_cast<uint32_t*>(output) + slot * plane + at;
      if (vector) {
        *reinterpret_cast<uint4*>(out) = make_uint4(v[0], v[1], v[2], v[3]);
      } else {
        for (int k = 0; k < count; ++k) out[k] = v[k];
      }
    } else {
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        uint32_t v[kGroup];
#pragma unroll
        for (int k = 0; k < kGroup; ++k) v[k] = table[rgb[k][c]];
        if constexpr (kFormat == PreprocessOutput::kFloat16Nchw) {
          uint16_t* out = static_cast<uint16_t*>(output) + (slot * 3 + c) * plane + at;
          if (vector)
            *reinterpret_cast<uint2*>(out) = make_uint2(v[0] | v[1] << 16, v[2] | v[3] << 16);
          else
            for (int k = 0; k < count; ++k) out[k] = static_cast<uint16_t>(v[k]);
        } else {
          uint32_t* out = static_cast<uint32_t*>(output) + (slot * 3 + c) * plane + at;
          if (vector)
            *reinterpret_cast<uint4*>(out) = make_uint4(v[0], v[1], v[2], v[3]);
          else
            for (int k = 0; k < count; ++k) out[k] = v[k];
        }
      }
    }
  }
  // Overlapped with the mode launched before (launch_mode): finish only after it.
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) finish_after_previous_kernel();
}

// The first mode's launch is plain (it follows whatever the stream did before, e.g. a network
// still reading the last batch's input); each later one may start while the one before runs
// (launch_kernel, programmatic dependent launch): they write other images, and each finishes
// only after its predecessor.
template <PreprocessOutput kFormat, int kMode>
cudaError_t launch_one(bool first, dim3 grid, cudaStream_t stream, const Batch& batch,
                       const Levels& levels, int canvas, int groups_per_row, bool vector, void* output,
                       int per_thread) {
  constexpr auto kernel = preprocess_kernel<kFormat, kMode>;
  if (first) {
    kernel<<<grid, kThreads, 0, stream>>>(batch, levels, canvas, groups_per_row, vector, output, per_thread);
    return cudaGetLastError();
  }
  return launch_kernel<kernel>(grid, dim3(kThreads), 0, stream, batch, levels, canvas, groups_per_row,
                               vector, output, per_thread);
}

template <PreprocessOutput kFormat>
cudaError_t launch_mode(int mode, bool first, dim3 grid, cudaStream_t stream, const Batch& batch,
                        const Levels& levels, int canvas, int groups_per_row, bool vector, void* output,
                        int per_thread) {
  switch (mode) {
    case kCopy:
      return launch_one<kFormat, kCopy>(first, grid, stream, batch, levels, canvas, groups_per_row, vector, output, per_thread);
    case kLinear:
      return launch_one<kFormat, kLinear>(first, grid, stream, batch, levels, canvas, groups_per_row, vector, output, per_thread);
    case kAreaInteger:
      return launch_one<kFormat, kAreaInteger>(first, grid, stream, batch, levels, canvas, groups_per_row, vector, output, per_thread);
    default:
      return launch_one<kFormat, kArea>(first, grid, stream, batch, levels, canvas, groups_per_row, vector, output, per_thread);
  }
}

ImageDesc describe(const PreprocessImage& image) {
  const LetterboxPlan& p = image.plan;
  ImageDesc d{};
  d.pixels = image.pixels;
  d.row_bytes = image.row_bytes;
  d.width = p.width;
  d.height = p.height;
  d.resized_width = p.resized_width;
  d.resized_height = p.resized_height;
  d.left = p.left;
  d.top = p.top;
  // The CPU resize's scales (src/vision/resize.cpp): IEEE double divisions, here as there.
  d.scale_x = static_cast<double>(p.width) / p.resized_width;
  d.scale_y = static_cast<double>(p.height) / p.resized_height;
  const double r = static_cast<double>(p.size) / std::max(p.width, p.height);
  d.mode = kCopy;
  if (r > 1.0) {
    d.mode = kLinear;
  } else if (r < 1.0) {
    // resize_area's test for whole-number shrink factors (OpenCV's resizeAreaFast).
    d.kx = static_cast<int>(d.scale_x);
    d.ky = static_cast<int>(d.scale_y);
    const bool integer = d.kx >= 1 && d.ky >= 1 && std::abs(d.scale_x - d.kx) < DBL_EPSILON &&
                         std::abs(d.scale_y - d.ky) < DBL_EPSILON;
    d.mode = integer ? kAreaInteger : kArea;
  }
  return d;
}

}  // namespace

Status preprocess(const PreprocessArgs& args, cudaStream_t stream) {
  constexpr const char* kOp = "preprocess";
  if (args.count < 0 || (args.count > 0 && !args.images))
    return invalid_argument(kOp, ": ", args.count, " images but no image array");
  if (args.canvas < 1) return invalid_argument(kOp, ": canvas ", args.canvas, " is not positive");
  if (!args.output) return invalid_argument(kOp, ": output is null");
  if (args.output_format == PreprocessOutput::kInt8Hwc4)
    QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "input_scale", args.input_scale));
  int overlap_groups = kGroupsPerThread;
  if (const char* v = std::getenv("QYOLO_PREPROCESS_OVERLAP_GROUPS")) {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 1 || n > 64)
      return invalid_argument(kOp, ": QYOLO_PREPROCESS_OVERLAP_GROUPS=", v, " (1..64)");
    overlap_groups = static_cast<int>(n);
  }
  for (int i = 0; i < args.count; ++i) {
    const PreprocessImage& im = args.images[i];
    const LetterboxPlan& p = im.plan;
    if (!im.pixels || p.width < 1 || p.height < 1 || im.row_bytes < p.width * 3)
      return invalid_argument(kOp, ": image ", i, " is ", p.width, "x", p.height, " with ",
                              im.row_bytes, " bytes per row", im.pixels ? "" : " and no pixels");
    if (p.canvas != args.canvas || p.left < 0 || p.top < 0 ||
        p.left + p.resized_width > args.canvas || p.top + p.resized_height > args.canvas)
      return invalid_argument(kOp, ": image ", i, " (resized ", p.resized_width, "x",
                              p.resized_height, ") does not fit the ", args.canvas,
                              " canvas; plan it with letterbox_plan(..., canvas)");
  }
  const int groups_per_row = (args.canvas + kGroup - 1) / kGroup;
  const bool vector =
      args.canvas % kGroup == 0 && reinterpret_cast<uintptr_t>(args.output) % 16 == 0;
  const Levels levels = level_table(args.output_format, args.input_scale);
  // One launch per resize mode present, each over up to kMaxImagesPerLaunch of its images; the
  // modes with fewer images first, so that a launch's blocks have all started (which is when
  // the next may begin) while the larger launches after it still have most of their work.
  std::vector<ImageDesc> descs(args.count);
  int per_mode[kArea + 1] = {};
  for (int i = 0; i < args.count; ++i) {
    descs[i] = describe(args.images[i]);
    descs[i].slot = i;
    ++per_mode[descs[i].mode];
  }
  int order[kArea + 1] = {kCopy, kLinear, kAreaInteger, kArea};
  std::stable_sort(order, order + kArea + 1, [&](int a, int b) { return per_mode[a] < per_mode[b]; });
  bool first = true;
  int launches = 0;
  for (const int mode : order) launches += (per_mode[mode] + kMaxImagesPerLaunch - 1) / kMaxImagesPerLaunch;
  for (const int mode : order) {
    Batch batch{};
    int n = 0;
    for (int i = 0; i <= args.count; ++i) {
      if (i < args.count && descs[i].mode == mode) batch.images[n++] = descs[i];
      if (n == kMaxImagesPerLaunch || (i == args.count && n > 0)) {
        const int per_thread = --launches > 0 ? overlap_groups : kGroupsPerThread;
        const dim3 grid(ops::blocks_for(int64_t{args.canvas} * groups_per_row, kThreads * per_thread), n);
        cudaError_t e = cudaSuccess;
        switch (args.output_format) {
          case PreprocessOutput::kInt8Hwc4:
            e = launch_mode<PreprocessOutput::kInt8Hwc4>(mode, first, grid, stream, batch, levels, args.canvas, groups_per_row, vector, args.output, per_thread);
            break;
          case PreprocessOutput::kFloat16Nchw:
            e = launch_mode<PreprocessOutput::kFloat16Nchw>(mode, first, grid, stream, batch, levels, args.canvas, groups_per_row, vector, args.output, per_thread);
            break;
          case PreprocessOutput::kFloat32Nchw:
            e = launch_mode<PreprocessOutput::kFloat32Nchw>(mode, first, grid, stream, batch, levels, args.canvas, groups_per_row, vector, args.output, per_thread);
            break;
        }
        QYOLO_RETURN_IF_ERROR(check(e, kOp));
        first = false;
        n = 0;
      }
    }
  }
  return Status::ok();
}

}  // namespace qyolo::cuda
