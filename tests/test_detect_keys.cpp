// detect's sort keys (src/kernels/cuda/ops/detect_keys.h): the compact packing the GPU's block
// sort sorts must keep every key's order and come back unchanged, for the scores detect can
// produce (products of two sigmoids, above conf, many ties) and any conf.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/ops/detect_keys.h"

namespace {

using qyolo::cuda::candidate_key;
using qyolo::cuda::CompactKeys;
using qyolo::cuda::make_compact_keys;

// Scores above conf as detect makes them: int8-table sigmoids multiplied, so many equal ones,
// and the extremes (1, the least float above conf).
std::vector<float> scores_above(float conf, std::mt19937& rng) {
  std::vector<float> table;
  for (int q = -128; q < 128; ++q) table.push_back(1.0f / (1.0f + std::exp(-0.1f * q)));
  table.push_back(1.0f);
  std::vector<float> scores;
  std::uniform_int_distribution<int> pick(0, int(table.size()) - 1);
  for (int i = 0; i < 20000; ++i) {
    const float s = table[pick(rng)] * table[pick(rng)];
    if (s > conf) scores.push_back(s);
  }
  scores.push_back(1.0f);
  const float least = std::nextafter(std::max(conf, 0.0f), 2.0f);
  if (least > conf && least <= 1.0f) scores.push_back(least);
  if (conf < 0.0f) scores.push_back(0.0f);
  return scores;
}

void expect_order_kept(uint64_t candidates, float conf) {
  SCOPED_TRACE(testing::Message() << "conf " << conf << ", " << candidates << " candidates");
  const CompactKeys c = make_compact_keys(candidates, conf);
  std::mt19937 rng(7);
  const std::vector<float> scores = scores_above(conf, rng);
  std::uniform_int_distribution<uint64_t> index(0, candidates - 1);
  std::vector<uint64_t> keys;
  for (float s : scores) keys.push_back(candidate_key(s, uint32_t(index(rng))));
  keys.push_back(candidate_key(scores[0], uint32_t(candidates - 1)));  // the largest index
  std::vector<uint64_t> packed;
  for (uint64_t k : keys) {
    const uint64_t p = c.pack(k);
    ASSERT_EQ(c.unpack(p), k);
    if (c.bits > 0 && c.bits < 64) {
      ASSERT_LT(p, uint64_t{1} << c.bits);
    }
    ASSERT_LT(p, c.padding()) << "a key packs to the padding";
    packed.push_back(p);
  }
  std::vector<size_t> by_key(keys.size()), by_packed(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) by_key[i] = by_packed[i] = i;
  std::stable_sort(by_key.begin(), by_key.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  std::stable_sort(by_packed.begin(), by_packed.end(),
                   [&](size_t a, size_t b) { return packed[a] < packed[b]; });
  EXPECT_EQ(by_key, by_packed);
}

TEST(DetectKeys, CandidateKeysSortByScoreDescendingThenIndex) {
  EXPECT_LT(candidate_key(0.9f, 5), candidate_key(0.5f, 1));
  EXPECT_LT(candidate_key(0.5f, 1), candidate_key(0.5f, 2));
  EXPECT_LT(candidate_key(1.0f, 0xffffffffu), candidate_key(0.0f, 0));
}

TEST(DetectKeys, CompactKeysKeepTheOrderAndComeBack) {
  const uint64_t yolov5_640 = 25200ull * 80;  // rows x classes
  for (float conf : {0.001f, 0.25f, 0.5f, 0.999f, 0.0f, -0.0f, -1.0f})
    expect_order_kept(yolov5_640, conf);
  expect_order_kept(1, 0.001f);
  expect_order_kept(uint64_t{1} << 32, 0.001f);
}

TEST(DetectKeys, CompactKeysUseFewerBits) {
  // yolov5 at 640, conf 0.001: 27 bits of score, 21 of index, so 12 of cub's 4-bit passes.
  const CompactKeys c = make_compact_keys(25200ull * 80, 0.001f);
  EXPECT_EQ(c.index_bits, 21);
  EXPECT_EQ(c.bits, 48);
  EXPECT_EQ(c.sort_bits(), 48);
  // No score can be above conf 1: the keys stay as they are.
  EXPECT_EQ(make_compact_keys(100, 1.0f).bits, 0);
  EXPECT_EQ(make_compact_keys(100, 1.0f).sort_bits(), 64);
}

}  // namespace
