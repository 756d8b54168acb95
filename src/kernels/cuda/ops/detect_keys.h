// detect's sort keys (src/kernels/cuda/ops/detect.cu), plain C++ so that the CPU tests check
// them and the kernels use the same code. A candidate's key sorts ascending as the CPU's
// stable sort orders candidates: score descending, then candidate index (row-major, then
// class). CompactKeys packs the keys of one detect call into their significant bits, so the
// block radix sort makes fewer passes.
#pragma once

#include <cstdint>
#include <cstring>

#include "../fast_divmod.h"  // QYOLO_HOST_DEVICE

namespace qyolo::cuda {

// (0x7fffffff - the score's bits) above the index: scores are not negative, and the bits of
// non-negative floats order as the floats do.
QYOLO_HOST_DEVICE uint64_t candidate_key(float score, uint32_t index) {
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  return (uint64_t{0x7fffffffu - bits} << 32) | index;
}

// The keys of one detect call as (score part - its least value) above the index's bits,
// `bits` in all: scores are at most 1 (a product of two sigmoids) and above conf, indices below
// rows x classes. A bijection on those keys that keeps their order; no packed key is all ones,
// which pads. bits == 0: the keys as they are (64 bits, padding ~0).
struct CompactKeys {
  int bits = 0, index_bits = 0;
  uint32_t hi_min = 0;

  QYOLO_HOST_DEVICE uint64_t pack(uint64_t key) const {
    if (bits == 0) return key;
    return (uint64_t{static_cast<uint32_t>(key >> 32) - hi_min} << index_bits) |
           static_cast<uint32_t>(key);
  }
  QYOLO_HOST_DEVICE uint64_t unpack(uint64_t key) const {
    if (bits == 0) return key;
    const uint64_t hi = (key >> index_bits) + hi_min;
    return (hi << 32) | (key & ((uint64_t{1} << index_bits) - 1));
  }
  QYOLO_HOST_DEVICE uint64_t padding() const {
    return bits == 0 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  }
  QYOLO_HOST_DEVICE int sort_bits() const { return bits == 0 ? 64 : bits; }
};

inline int bit_width(uint64_t v) {
  int bits = 0;
  for (; v; v >>= 1) ++bits;
  return bits;
}

// The packing for candidates of `candidates` indices (rows x classes) with scores above conf.
inline CompactKeys make_compact_keys(uint64_t candidates, float conf) {
  auto bits_of = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
  };
  CompactKeys c;
  c.hi_min = 0x7fffffffu - bits_of(1.0f);  // scores are at most 1
  // Scores are above conf and not negative: their bits above a positive conf's.
  const uint32_t hi_max = conf > 0.0f ? 0x7fffffffu - bits_of(conf) - 1u : 0x7fffffffu;
  if (!(conf < 1.0f) || hi_max < c.hi_min || candidates < 1 || candidates > (uint64_t{1} << 32))
    return CompactKeys{};
  c.index_bits = bit_width(candidates - 1) > 0 ? bit_width(candidates - 1) : 1;
  // One value to spare, so that no packed key is all ones (the padding).
  c.bits = bit_width(uint64_t{hi_max - c.hi_min} + 1) + c.index_bits;
  if (c.bits > 64) return CompactKeys{};
  return c;
}

}  // namespace qyolo::cuda
