// Division by a divisor fixed for a whole launch, as a multiply-high and a shift (Granlund and
// Montgomery): the kernels split pixel indices into image, row and column once per tile, and a
// hardware-less 32-bit division costs ~20 instructions each time. Plain C++, so the CPU tests
// check it against '/' and the kernels use the same code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QYOLO_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define QYOLO_HOST_DEVICE inline
#endif

namespace qyolo::cuda {

struct FastDivmod {
  int32_t divisor = 1;
  uint32_t multiplier = 0;  // 0 with divisor 1: the quotient is the numerator
  uint32_t shift = 0;

  FastDivmod() = default;
  // divisor >= 1.
  explicit FastDivmod(int32_t d) : divisor(d) {
    if (d == 1) return;
    uint32_t log2_ceil = 0;
    while ((uint64_t{1} << log2_ceil) < uint64_t(d)) ++log2_ceil;
    const uint32_t p = 31 + log2_ceil;
    multiplier = uint32_t(((uint64_t{1} << p) + uint64_t(d) - 1) / uint64_t(d));
    shift = p - 32;
  }

  // n / divisor for 0 <= n < 2^31.
  QYOLO_HOST_DEVICE int32_t div(int32_t n) const {
    if (divisor == 1) return n;
    return int32_t(uint32_t((uint64_t(uint32_t(n)) * multiplier) >> 32) >> shift);
  }
  QYOLO_HOST_DEVICE int32_t divmod(int32_t n, int32_t& remainder) const {
    const int32_t q = div(n);
    remainder = n - q * divisor;
    return q;
  }
};

}  // namespace qyolo::cuda
