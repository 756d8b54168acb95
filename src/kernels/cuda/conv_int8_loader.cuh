// The implicit-GEMM loader shared by the INT8 convolution kernels: im2col happens in the
// global->shared copies. Each thread copies one fixed 16-byte chunk column of the 64-byte K step
// for a few output pixels (A) and output channels (B); padding, pixels past the end and K past
// the last tap are zero-filled by the copy itself, so the MMA loop never branches on edges.
//
// Shared-memory tiles are [rows][64 bytes] with the 16-byte chunks XOR-swizzled by row: the 8 rows
// one ldmatrix phase reads hit distinct banks, and the same layout is wgmma's 64-byte-swizzle
// K-major canonical layout.
#pragma once

#include <climits>
#include <cstdint>

#include "common.cuh"
#include "conv_int8_params.h"

namespace qyolo::cuda {

constexpr int kTileK = 64;  // bytes of K per pipeline stage: two k32 MMA steps

__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * kTileK + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// S2D: the stem's hwc4 input seen as space-to-depth (qyolo/conv_int8.h, kHwc4S2d). Its 16-byte
// "pixel" (Y, X) is two 8-byte pieces, input pixels (2Y + dy, 2X..2X+1) for dy = 0, 1; the params
// carry the kernel, stride and padding of the 3x3/1 view, the input size in real pixels.
template <int BM, int BN, int kThreads, bool S2D>
struct ConvLoader {
  static constexpr int kRowsPerPass = kThreads / 4;  // 4 threads cover one 64-byte row
  static constexpr int kARows = BM / kRowsPerPass;
  static constexpr int kBRows = (BN + kRowsPerPass - 1) / kRowsPerPass;
  static_assert(BM % kRowsPerPass == 0, "A rows must split evenly over the threads");

  const int8_t* image[kARows];  // first byte of the pixel's image
  int ih0[kARows], iw0[kARows];  // top-left input position of the pixel's window
  int col, row, n0;
  int tap_r, tap_s, tap_c;     // where this thread's chunk is in K, advanced per stage
  int tap_r0, tap_s0, tap_c0;  // ... and where it starts

  __device__ __forceinline__ ConvLoader(const ConvInt8Params& p, int tid) : col(tid & 3), row(tid >> 2) {
    const int tap = (col * 16) / p.taps_channels;
    tap_c0 = col * 16 - tap * p.taps_channels;
    tap_r0 = tap / p.kernel;
    tap_s0 = tap - tap_r0 * p.kernel;
  }

  // Points the loader at the output tile whose first pixel is m0 and first channel n0.
  __device__ __forceinline__ void begin_tile(const ConvInt8Params& p, int m0, int n0_) {
    n0 = n0_;
    tap_r = tap_r0, tap_s = tap_s0, tap_c = tap_c0;
    const int64_t image_bytes = int64_t{p.in_h} * p.in_w * p.in_stride;
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const int m = m0 + row + i * kRowsPerPass;
      image[i] = p.input;
      ih0[i] = INT_MIN / 4;  // a pixel past the end: every tap fails the bounds test
      iw0[i] = 0;
      if (m < p.pixels) {
        int rest, ow;
        const int n = p.div_out_hw.divmod(m, rest);
        const int oh = p.div_out_w.divmod(rest, ow);
        image[i] = p.input + n * image_bytes;
        ih0[i] = oh * p.stride - p.pad;
        iw0[i] = ow * p.stride - p.pad;
      }
    }
  }

  // Issues the copies of K step `kt` into the stage's A and B tiles; calls come in kt order.
  __device__ __forceinline__ void load(const ConvInt8Params& p, uint8_t* a_tile, uint8_t* b_tile,
                                       int kt) {
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const uint32_t dst = ptx::smem_address(a_tile + swizzle(row + i * kRowsPerPass, col));
      const int y = ih0[i] + tap_r, x = iw0[i] + tap_s;
      if constexpr (S2D) {
        const int ih = 2 * y, iw = 2 * x;
        const bool tap_ok = tap_r < p.kernel && unsigned(iw) < unsigned(p.in_w);
#pragma unroll
        for (int dy = 0; dy < 2; ++dy) {
          const bool ok = tap_ok && unsigned(ih + dy) < unsigned(p.in_h);
          const int8_t* src = ok ? image[i] + (int64_t{ih + dy} * p.in_w + iw) * 4 : p.input;
          if (p.in_w % 2 == 0) {  // pixel pairs start 8-byte aligned
            ptx::cp_async_8(dst + 8 * dy, src, ok ? 8 : 0);
          } else {  // odd rows are 4 bytes off: pixel by pixel, the last pair maybe half out
            ptx::cp_async_4(dst + 8 * dy, src, ok);
            const bool right = ok && iw + 1 < p.in_w;
            ptx::cp_async_4(dst + 8 * dy + 4, right ? src + 4 : p.input, right);
          }
        }
      } else {
        const bool ok =
            tap_r < p.kernel && unsigned(y) < unsigned(p.in_h) && unsigned(x) < unsigned(p.in_w);
        ptx::cp_async_16(dst, ok ? image[i] + (int64_t{y} * p.in_w + x) * p.in_stride + tap_c : p.input,
                         ok);
      }
    }
    const int k = kt * kTileK + col * 16;
#pragma unroll
    for (int i = 0; i < kBRows; ++i) {
      const int r = row + i * kRowsPerPass;
      if (kBRows * kRowsPerPass > BN && r >= BN) break;
      const int n = n0 + r;
      const bool ok = n < p.cout && k < p.k_total;
      ptx::cp_async_16(ptx::smem_address(b_tile + swizzle(r, col)),
                       ok ? p.weights + int64_t{n} * p.k_total + k : p.weights, ok);
    }
    tap_c += kTileK;
    while (tap_c >= p.taps_channels) {
      tap_c -= p.taps_channels;
      if (++tap_s == p.kernel) tap_s = 0, ++tap_r;
    }
  }
};

}  // namespace qyolo::cuda
