// FP16 convolution for the layers that stay FP16 (YOLOv5's head 1x1 convolutions, and any
// layer --layerPrecisions names): implicit GEMM, M = output pixels, N = output channels,
// K = taps x channels padded to 32, on mma.sync m16n8k16 with float32 accumulation. A 64x64
// block tile of four warps (32x32 each), K in steps of 32, double-buffered through shared memory
// with the next step's loads in flight during the current step's MMAs.
#include <algorithm>
#include <cstring>

#include "ops_common.cuh"

namespace qyolo::cuda {

std::vector<uint16_t> pack_conv_fp16_weights(const ConvInt8Shape& s, const float* weights_ohwi) {
  const int packed = conv_fp16_packed_channels(s.in_channels), k = s.kernel;
  std::vector<uint16_t> out(size_t(s.out_channels) * k * k * packed, 0);
  for (int o = 0; o < s.out_channels; ++o)
    for (int tap = 0; tap < k * k; ++tap)
      for (int c = 0; c < s.in_channels; ++c)
        out[(size_t(o) * k * k + tap) * packed + c] =
            float_to_half_rne(weights_ohwi[(size_t(o) * k * k + tap) * s.in_channels + c]);
  return out;
}

namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 32, kThreads = 128;
constexpr int kRow = kTileK + 8;  // halves per shared row: conflict-free fragment reads

struct Smem {
  uint16_t a[2][kTileM][kRow];
  uint16_t b[2][kTileN][kRow];
};

__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

struct Params {
  ConvFp16Args a;
  int out_h, out_w, packed, steps_per_tap, steps;
  int64_t pixels;
  bool vector_input;  // slice stride, offset and pointer allow 16-byte loads
};

// One thread's share of a K step: 16 halves of one A row and 16 of one B row.
struct Fragment {
  uint4 a[2], b[2];
};

__device__ __forceinline__ void load_step(const Params& p, int step, int64_t pixel, int n, int oh,
                                          int ow, int col, int out_channel, Fragment& f) {
  const ConvFp16Args& a = p.a;
  const int tap = step / p.steps_per_tap;
  const int c0 = (step % p.steps_per_tap) * kTileK + col;
  const int r = tap / a.shape.kernel, s = tap % a.shape.kernel;
  const int ih = oh * a.shape.stride - a.shape.pad + r, iw = ow * a.shape.stride - a.shape.pad + s;
  const bool inside =
      pixel < p.pixels && ih >= 0 && ih < a.shape.in_h && iw >= 0 && iw < a.shape.in_w;
  const uint16_t* x = a.x +
                      ((int64_t{n} * a.shape.in_h + ih) * a.shape.in_w + iw) * a.x_layout.stride +
                      a.x_layout.offset;
  for (int g = 0; g < 2; ++g) {
    const int c = c0 + g * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (inside && c < a.shape.in_channels) {
      if (p.vector_input && c + 8 <= a.shape.in_channels) {
        v = *reinterpret_cast<const uint4*>(x + c);
      } else {
        uint16_t h[8];
        for (int j = 0; j < 8; ++j) h[j] = c + j < a.shape.in_channels ? x[c + j] : 0;
        memcpy(&v, h, 16);
      }
    }
    f.a[g] = v;
  }
  if (out_channel < a.shape.out_channels) {
    const uint4* w = reinterpret_cast<const uint4*>(
        a.weights + (int64_t{out_channel} * a.shape.kernel * a.shape.kernel + tap) * p.packed +
        (step % p.steps_per_tap) * kTileK + col);
    f.b[0] = w[0];
    f.b[1] = w[1];
  } else {
    f.b[0] = f.b[1] = make_uint4(0, 0, 0, 0);
  }
}

__global__ void __launch_bounds__(kThreads) conv_fp16_kernel(Params p) {
  __shared__ __align__(16) Smem smem;
  wait_for_previous_kernel();
  const ConvFp16Args& a = p.a;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t block_m = int64_t{blockIdx.x} * kTileM;
  const int block_n = blockIdx.y * kTileN;

  // This thread loads row tid / 2, halves (tid % 2) * 16 .. + 16, of both tiles.
  const int load_row = tid / 2, col = (tid % 2) * 16;
  const int64_t pixel = block_m + load_row;
  const int ow = static_cast<int>(pixel % p.out_w);
  const int oh = static_cast<int>((pixel / p.out_w) % p.out_h);
  const int n = static_cast<int>(pixel / (int64_t{p.out_w} * p.out_h));
  const int out_channel = block_n + load_row;

  auto store = [&](int buffer, const Fragment& f) {
    uint4* sa = reinterpret_cast<uint4*>(&smem.a[buffer][load_row][col]);
    uint4* sb = reinterpret_cast<uint4*>(&smem.b[buffer][load_row][col]);
    sa[0] = f.a[0], sa[1] = f.a[1], sb[0] = f.b[0], sb[1] = f.b[1];
  };

  float acc[2][4][4] = {};
  const int warp_m = (warp % 2) * 32, warp_n = (warp / 2) * 32;
  const int g = lane / 4, t = lane % 4;

  Fragment f;
  load_step(p, 0, pixel, n, oh, ow, col, out_channel, f);
  store(0, f);
  __syncthreads();
  for (int step = 0; step < p.steps; ++step) {
    const int buffer = step % 2;
    const bool more = step + 1 < p.steps;
    if (more) load_step(p, step + 1, pixel, n, oh, ow, col, out_channel, f);
    for (int kk = 0; kk < kTileK; kk += 16) {
      uint32_t af[2][4], bf[4][2];
      for (int mi = 0; mi < 2; ++mi) {
        const int row = warp_m + mi * 16 + g;
        auto word = [&](int r, int k) {
          return *reinterpret_cast<const uint32_t*>(&smem.a[buffer][r][k]);
        };
        af[mi][0] = word(row, kk + t * 2);
        af[mi][1] = word(row + 8, kk + t * 2);
        af[mi][2] = word(row, kk + t * 2 + 8);
        af[mi][3] = word(row + 8, kk + t * 2 + 8);
      }
      for (int ni = 0; ni < 4; ++ni) {
        const int row = warp_n + ni * 8 + g;
        bf[ni][0] = *reinterpret_cast<const uint32_t*>(&smem.b[buffer][row][kk + t * 2]);
        bf[ni][1] = *reinterpret_cast<const uint32_t*>(&smem.b[buffer][row][kk + t * 2 + 8]);
      }
      for (int mi = 0; mi < 2; ++mi)
        for (int ni = 0; ni < 4; ++ni) mma_f16(acc[mi][ni], af[mi], bf[ni]);
    }
    if (more) store(buffer ^ 1, f);
    __syncthreads();
  }

  for (int mi = 0; mi < 2; ++mi)
    for (int ni = 0; ni < 4; ++ni)
      for (int half = 0; half < 2; ++half) {
        const int64_t m = block_m + warp_m + mi * 16 + g + half * 8;
        if (m >= p.pixels) continue;
        for (int j = 0; j < 2; ++j) {
          const int oc = block_n + warp_n + ni * 8 + t * 2 + j;
          if (oc >= a.shape.out_channels) continue;
          float y = acc[mi][ni][half * 2 + j];
          if (a.bias) y = __fadd_rn(y, a.bias[oc]);
          if (a.silu) y = __fdiv_rn(y, __fadd_rn(1.0f, expf(-y)));
          const int64_t at = m * a.y_layout.stride + a.y_layout.offset + oc;
          if (a.output == ConvOutput::kInt8)
            static_cast<int8_t*>(a.y)[at] = ops::quantize_rne(y, a.output_scale);
          else
            static_cast<uint16_t*>(a.y)[at] = ops::half_bits(y);
        }
      }
}

}  // namespace

Status conv_fp16(const ConvFp16Args& a, cudaStream_t stream) {
  constexpr const char* kOp = "conv_fp16";
  const ConvInt8Shape& s = a.shape;
  if (s.batch < 1 || s.in_channels < 1 || s.in_h < 1 || s.in_w < 1 || s.out_channels < 1 ||
      s.kernel < 1 || s.stride < 1 || s.pad < 0 || s.out_h() < 1 || s.out_w() < 1)
    return invalid_argument(kOp, ": bad geometry (batch ", s.batch, ", in ", s.in_channels, "x",
                            s.in_h, "x", s.in_w, ", out ", s.out_channels, ", kernel ", s.kernel,
                            ", stride ", s.stride, ", pad ", s.pad, ")");
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, s.in_channels, a.x));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "y", a.y_layout, s.out_channels, a.y));
  if (!a.weights) return invalid_argument(kOp, ": weights are null");
  if (reinterpret_cast<uintptr_t>(a.weights) % 16 != 0)
    return invalid_argument(kOp, ": weights must be 16-byte aligned");
  if (a.output != ConvOutput::kFloat16 && a.output != ConvOutput::kInt8)
    return invalid_argument(kOp, ": output must be kFloat16 or kInt8");
  if (a.output == ConvOutput::kInt8)
    QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "output_scale", a.output_scale));
  Params p;
  p.a = a;
  p.out_h = s.out_h();
  p.out_w = s.out_w();
  p.packed = conv_fp16_packed_channels(s.in_channels);
  p.steps_per_tap = p.packed / kTileK;
  p.steps = s.kernel * s.kernel * p.steps_per_tap;
  p.pixels = s.out_pixels();
  p.vector_input = a.x_layout.stride % 8 == 0 && a.x_layout.offset % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
  const dim3 grid(ops::blocks_for(p.pixels, kTileM), ops::blocks_for(s.out_channels, kTileN));
  launch_kernel<conv_fp16_kernel>(grid, dim3(kThreads), 0, stream, p);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
