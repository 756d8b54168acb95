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
//
// The copies are most of the kernels' instructions, so the per-copy work is kept small: each row's
// source is its window origin plus one per-thread tap offset (advanced incrementally per K step),
// the shared-memory destinations are per-thread constants, and the bounds test is two compares.
// kLoadB false: B (the weights) arrives by other means (the copy engine), A only is copied here.
template <int BM, int BN, int kThreads, bool S2D, bool kLoadB = true>
struct ConvLoader {
  static constexpr int kRowsPerPass = kThreads / 4;  // 4 threads cover one 64-byte row
  static constexpr int kARows = BM / kRowsPerPass;
  static constexpr int kBRows = (BN + kRowsPerPass - 1) / kRowsPerPass;
  static_assert(BM % kRowsPerPass == 0, "A rows must split evenly over the threads");
  static_assert(kRowsPerPass % 8 == 0, "rows i * kRowsPerPass apart share one swizzle phase");

  const int8_t* window[kARows];  // the pixel's window origin (may lie outside the image)
  int ih0[kARows], iw0[kARows];  // ... in input coordinates (S2D: of the 3x3/1 view)
  const int8_t* weight_row[kBRows];  // this thread's chunk of the output channel's row, or null
  int col, row, swizzled;
  int tap_r, tap_s, tap_c, tap_off;  // this thread's chunk in K, and its byte offset in the window
  int tap_r0, tap_s0, tap_c0, tap_off0;
  int step_x, step_row;  // tap_off change for the next tap along a row, and for the next row

  __device__ __forceinline__ ConvLoader(const ConvInt8Params& p, int tid)
      : col(tid & 3), row(tid >> 2), swizzled(swizzle(tid >> 2, tid & 3)) {
    const int tap = (col * 16) / p.taps_channels;
    tap_c0 = col * 16 - tap * p.taps_channels;
    tap_r0 = tap / p.kernel;
    tap_s0 = tap - tap_r0 * p.kernel;
    if constexpr (S2D) {  // one view pixel is 2 input pixels of 4 bytes along x
      step_x = 8;
      step_row = 8 * p.in_w - 8 * p.kernel;
      tap_off0 = 8 * (tap_r0 * p.in_w + tap_s0);
    } else {
      step_x = p.in_stride - p.taps_channels;
      step_row = (p.in_w - p.kernel) * p.in_stride;
      tap_off0 = (tap_r0 * p.in_w + tap_s0) * p.in_stride + tap_c0;
    }
  }

  // Points the loader at the output tile whose first pixel is m0 and first channel n0, its K
  // steps from k0 on (split K: not 0).
  __device__ __forceinline__ void begin_tile(const ConvInt8Params& p, int m0, int n0, int k0 = 0) {
    tap_r = tap_r0, tap_s = tap_s0, tap_c = tap_c0, tap_off = tap_off0;
    if (k0 != 0) {  // this thread's chunk of K step k0: its tap and byte, as load() would reach it
      const int k = k0 * kTileK + col * 16;
      const int tap = k / p.taps_channels;
      tap_c = k - tap * p.taps_channels;
      tap_r = tap / p.kernel;
      tap_s = tap - tap_r * p.kernel;
      tap_off = S2D ? 8 * (tap_r * p.in_w + tap_s)
                    : (tap_r * p.in_w + tap_s) * p.in_stride + tap_c;
    }
    const int64_t image_bytes = int64_t{p.in_h} * p.in_w * (S2D ? 4 : p.in_stride);
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const int m = m0 + row + i * kRowsPerPass;
      window[i] = p.input;
      ih0[i] = INT_MIN / 4;  // a pixel past the end: every tap fails the bounds test
      iw0[i] = 0;
      if (m < p.pixels) {
        int rest, ow;
        const int n = p.div_out_hw.divmod(m, rest);
        const int oh = p.div_out_w.divmod(rest, ow);
        ih0[i] = oh * p.stride - p.pad;
        iw0[i] = ow * p.stride - p.pad;
        const int64_t origin = S2D ? (int64_t{2 * ih0[i]} * p.in_w + 2 * iw0[i]) * 4
                                   : (int64_t{ih0[i]} * p.in_w + iw0[i]) * p.in_stride;
        window[i] = p.input + (n * image_bytes + origin);
      }
    }
#pragma unroll
    for (int i = 0; i < kBRows; ++i) {
      if constexpr (!kLoadB) break;
      const int n = n0 + row + i * kRowsPerPass;
      weight_row[i] = n < p.cout ? p.weights + int64_t{n} * p.k_total + col * 16 : nullptr;
    }
  }

  // Issues the copies of K step `kt` into the stage's A and B tiles; calls come in kt order.
  __device__ __forceinline__ void load(const ConvInt8Params& p, uint8_t* a_tile, uint8_t* b_tile,
                                       int kt) {
    const uint32_t a_dst = ptx::smem_address(a_tile) + swizzled;
    const bool tap_ok = tap_r < p.kernel;
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const uint32_t dst = a_dst + i * kRowsPerPass * kTileK;
      const int y = ih0[i] + tap_r, x = iw0[i] + tap_s;
      if constexpr (S2D) {
        const int ih = 2 * y, iw = 2 * x;
        const bool x_ok = tap_ok && unsigned(iw) < unsigned(p.in_w);
        const int8_t* src = window[i] + tap_off;
#pragma unroll
        for (int dy = 0; dy < 2; ++dy) {
          const bool ok = x_ok && unsigned(ih + dy) < unsigned(p.in_h);
          const int8_t* piece = ok ? src + dy * 4 * p.in_w : p.input;
          if (p.in_w % 2 == 0) {  // pixel pairs start 8-byte aligned
            ptx::cp_async_8(dst + 8 * dy, piece, ok ? 8 : 0);
          } else {  // odd rows are 4 bytes off: pixel by pixel, the last pair maybe half out
            ptx::cp_async_4(dst + 8 * dy, piece, ok);
            const bool right = ok && iw + 1 < p.in_w;
            ptx::cp_async_4(dst + 8 * dy + 4, right ? piece + 4 : p.input, right);
          }
        }
      } else {
        const bool ok = tap_ok && unsigned(y) < unsigned(p.in_h) && unsigned(x) < unsigned(p.in_w);
        ptx::cp_async_16(dst, ok ? window[i] + tap_off : p.input, ok);
      }
    }
    const bool k_ok = kt * kTileK + col * 16 < p.k_total;
    const uint32_t b_dst = ptx::smem_address(b_tile) + swizzled;
#pragma unroll
    for (int i = 0; i < kBRows; ++i) {
      if constexpr (!kLoadB) break;
      if (kBRows * kRowsPerPass > BN && row + i * kRowsPerPass >= BN) break;
      const bool ok = k_ok && weight_row[i] != nullptr;
      ptx::cp_async_16(b_dst + i * kRowsPerPass * kTileK,
                       ok ? weight_row[i] + kt * kTileK : p.weights, ok);
    }
    tap_c += kTileK;
    if constexpr (!S2D) tap_off += kTileK;
    while (tap_c >= p.taps_channels) {
      tap_c -= p.taps_channels;
      tap_off += step_x;
      if (++tap_s == p.kernel) tap_s = 0, ++tap_r, tap_off += step_row;
    }
  }
};

}  // namespace qyolo::cuda
