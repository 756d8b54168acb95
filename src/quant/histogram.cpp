// Histograms of |x| and the amax rules pytorch-quantization's HistogramCalibrator applies to
// them (calib/histogram.py: _compute_amax_percentile, _compute_amax_entropy,
// _compute_amax_mse), written for speed: entropy in O(levels) per candidate from prefix sums.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "qyolo/quant.h"

namespace qyolo {
namespace {

// Values are binned a chunk at a time: bin indices computed in a vectorizable loop, then
// counted into four interleaved sub-histograms so that runs of equal bins do not stall.
constexpr int64_t kChunk = 1024;
constexpr int kLanes = 4;

// max |x| of the values, or -1 when one is NaN or infinite.
float checked_max_abs(const float* values, int64_t count) {
  float max = 0.0f;
  int bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float a = std::fabs(values[i]);
    max = a > max ? a : max;
    bad |= !(a <= std::numeric_limits<float>::max());
  }
  return bad ? -1.0f : max;
}

int levels_of(int num_bits, bool is_unsigned) {
  return 1 << (num_bits - 1 + (is_unsigned ? 1 : 0));
}

}  // namespace

AbsHistogram::AbsHistogram(int num_bins) : num_bins_(std::max(num_bins, 1)) {}

AbsHistogram AbsHistogram::from_counts(std::vector<int64_t> counts, double bin_width) {
  AbsHistogram h(static_cast<int>(std::max<size_t>(counts.size(), 1)));
  h.counts_ = std::move(counts);
  h.width_ = bin_width;
  for (int64_t c : h.counts_) h.total_ += c;
  h.max_ = static_cast<float>(h.range());
  return h;
}

Status AbsHistogram::add(const float* values, int64_t count) {
  if (count <= 0) return Status();
  if (width_ == 0.0) {
    // The first non-zero batch sets the width from its own max, as the reference does.
    const float max = checked_max_abs(values, count);
    if (max < 0.0f) return invalid_argument("a value is NaN or infinite");
    if (max == 0.0f) {
      leading_zeros_ += count;
      total_ += count;
      return Status();
    }
    width_ = static_cast<double>(max) / num_bins_;
    counts_.assign(static_cast<size_t>(num_bins_), 0);
    counts_[0] += leading_zeros_;
    leading_zeros_ = 0;
  }
  // One pass, a chunk at a time: check and take the chunk's max, extend the bins when it is
  // beyond them (a wider batch never moves earlier counts), then count. Nothing is committed
  // before the end, so an error leaves the histogram as it was.
  std::array<std::vector<uint32_t>, kLanes> lanes;  // 32 bits: a batch below 2^34 values
  for (auto& lane : lanes) lane.assign(counts_.size(), 0u);
  double upper = range();
  float batch_max = 0.0f;
  int32_t index[kChunk];
  for (int64_t start = 0; start < count; start += kChunk) {
    const int64_t n = std::min(kChunk, count - start);
    const float* x = values + start;
    const float chunk_max = checked_max_abs(x, n);
    if (chunk_max < 0.0f) {
      const int64_t bad = std::find_if(x, x + n, [](float v) { return !std::isfinite(v); }) - x;
      return invalid_argument("value ", start + bad, " is NaN or infinite");
    }
    if (chunk_max > batch_max) batch_max = chunk_max;
    if (chunk_max > upper) {
      // ceil(max / width) bins; a value on the upper edge is counted in the last bin.
      size_t bins = static_cast<size_t>(std::ceil(static_cast<double>(chunk_max) / width_));
      while (static_cast<double>(bins) * width_ < chunk_max) ++bins;
      for (auto& lane : lanes) lane.resize(bins, 0u);
      upper = static_cast<double>(bins) * width_;
    }
    const int32_t last = static_cast<int32_t>(lanes[0].size()) - 1;
    const float inverse_width = static_cast<float>(1.0 / width_);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t b = static_cast<int32_t>(std::fabs(x[i]) * inverse_width);
      index[i] = b < last ? b : last;  // |x| == the first max lands in the last bin
    }
    uint32_t* lane0 = lanes[0].data();
    uint32_t* lane1 = lanes[1].data();
    uint32_t* lane2 = lanes[2].data();
    uint32_t* lane3 = lanes[3].data();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      ++lane0[index[i]];
      ++lane1[index[i + 1]];
      ++lane2[index[i + 2]];
      ++lane3[index[i + 3]];
    }
    for (; i < n; ++i) ++lane0[index[i]];
  }
  counts_.resize(lanes[0].size(), 0);
  for (size_t b = 0; b < counts_.size(); ++b) {
    counts_[b] += int64_t{lanes[0][b]} + lanes[1][b] + lanes[2][b] + lanes[3][b];
  }
  max_ = std::max(max_, batch_max);
  total_ += count;
  return Status();
}

double histogram_amax_percentile(const AbsHistogram& histogram, double percentile) {
  const auto& counts = histogram.counts();
  if (counts.empty()) return 0.0;
  double total = 0.0;
  for (int64_t c : counts) total += static_cast<double>(c);
  if (total == 0.0) return 0.0;
  // np.searchsorted(np.cumsum(hist / total), percentile / 100): the first bin whose
  // cumulative fraction reaches the target, summed the same way; its lower edge is amax.
  const double target = percentile / 100.0;
  double cdf = 0.0;
  size_t index = 0;
  for (; index < counts.size(); ++index) {
    cdf += static_cast<double>(counts[index]) / total;
    if (cdf >= target) break;
  }
  return static_cast<double>(index) * histogram.bin_width();
}

double histogram_amax_entropy(const AbsHistogram& histogram, int start_bin, int stride,
                              int num_bits, bool is_unsigned) {
  const size_t n = histogram.counts().size();
  if (n == 0 || histogram.total() == 0) return 0.0;
  start_bin = std::max(start_bin, 1);
  stride = std::max(stride, 1);
  const int levels = levels_of(num_bits, is_unsigned);
  if (n < static_cast<size_t>(start_bin) || static_cast<size_t>(start_bin) < 1)
    return histogram.range();

  // TensorRT's rule: bin 0 (mostly exact zeros) is replaced by bin 1.
  std::vector<double> bins(histogram.counts().begin(), histogram.counts().end());
  if (n > 1) bins[0] = bins[1];
  // Prefix sums over bins [0, j): counts, non-empty bins, and count * log(count).
  std::vector<double> sum(n + 1, 0.0), nonzero(n + 1, 0.0), count_log_count(n + 1, 0.0);
  for (size_t j = 0; j < n; ++j) {
    const double b = bins[j];
    sum[j + 1] = sum[j] + b;
    nonzero[j + 1] = nonzero[j] + (b != 0.0 ? 1.0 : 0.0);
    count_log_count[j + 1] = count_log_count[j] + (b > 0.0 ? b * std::log(b) : 0.0);
  }
  const double total = sum[n];
  const double log_total = std::log(total);
  const double inf = std::numeric_limits<double>::infinity();

  // Candidate i keeps bins [0, i), folds the rest into bin i-1 (the reference P), and
  // requantizes [0, i) into `levels` groups, fine bin j in group floor(j * levels / i); each
  // non-empty bin of a group gets the group's mean over its non-empty bins (Q). Then
  //   KL(P || Q) = sum_j p_j log(p_j / q_j)  with p, q normalized,
  // and, q being constant over a group's non-empty bins, the sum collapses per group.
  double best = inf;
  size_t best_i = n;
  for (size_t i = static_cast<size_t>(start_bin); i <= n; i += static_cast<size_t>(stride)) {
    const double kept = sum[i];
    const double outliers = total - kept;
    const double last_bin = bins[i - 1];
    const double last_reference = last_bin + outliers;
    double divergence = inf;
    if (kept > 0.0 && !(last_bin == 0.0 && last_reference > 0.0)) {
      // sum over non-empty j < i of b_j * log q_j, q unnormalized (group mean).
      double count_log_q = 0.0;
      double last_log_q = 0.0;
      for (int k = 0; k < levels; ++k) {
        const size_t lo = (static_cast<size_t>(k) * i + levels - 1) / levels;
        const size_t hi = (static_cast<size_t>(k + 1) * i + levels - 1) / levels;
        const double group_sum = sum[hi] - sum[lo];
        const double group_nonzero = nonzero[hi] - nonzero[lo];
        if (group_nonzero == 0.0) continue;
        const double log_q = std::log(group_sum / group_nonzero);
        count_log_q += group_sum * log_q;
        if (k == levels - 1) last_log_q = log_q;  // fine bin i-1 is in the last group
      }
      // p_j log(p_j/q_j) with p_j = r_j / total, q_j = qraw_j / kept, r_j = b_j except j = i-1.
      double body = count_log_count[i] - count_log_q;  // sum b_j (log b_j - log qraw_j)
      if (last_bin > 0.0) {
        body -= last_bin * (std::log(last_bin) - last_log_q);
        body += last_reference * (std::log(last_reference) - last_log_q);
      }
      divergence = body / total + (std::log(kept) - log_total);
    }
    if (divergence <= best) {  // the last minimum wins, as in the reference
      best = divergence;
      best_i = i;
    }
  }
  return static_cast<double>(best_i) * histogram.bin_width();
}

double histogram_amax_mse(const AbsHistogram& histogram, int start_bin, int stride, int num_bits,
                          bool is_unsigned) {
  const auto& counts = histogram.counts();
  const size_t n = counts.size();
  if (n == 0 || histogram.total() == 0) return 0.0;
  start_bin = std::max(start_bin, 0);
  stride = std::max(stride, 1);
  const float max_bound = static_cast<float>(levels_of(num_bits, is_unsigned) - 1);
  // Bin centres in float32, as the reference computes them; only non-empty bins count.
  const float width = static_cast<float>(histogram.bin_width());
  auto centre = [&](size_t j) {
    return (static_cast<float>(j) * width + static_cast<float>(j + 1) * width) / 2.0f;
  };
  std::vector<float> centres, weights;
  for (size_t j = 0; j < n; ++j) {
    if (counts[j] == 0) continue;
    centres.push_back(centre(j));
    weights.push_back(static_cast<float>(counts[j]));
  }
  if (static_cast<size_t>(start_bin) >= n) return static_cast<double>(centre(n - 1));
  constexpr float kRound = 8388608.0f;  // 2^23: (x + 2^23) - 2^23 rounds half to even
  double best = std::numeric_limits<double>::infinity();
  size_t best_i = static_cast<size_t>(start_bin);
  for (size_t i = static_cast<size_t>(start_bin); i < n; i += static_cast<size_t>(stride)) {
    const float amax = centre(i);
    const float scale = max_bound / amax;
    double error = 0.0;
#pragma omp simd reduction(+ : error)
    for (size_t j = 0; j < centres.size(); ++j) {
      const float c = centres[j];
      float q = (c * scale + kRound) - kRound;
      q = q < max_bound ? q : max_bound;
      const float d = q / scale - c;
      error += static_cast<double>(d * d * weights[j]);
    }
    if (error < best) {
      best = error;
      best_i = i;
    }
  }
  return static_cast<double>(centre(best_i));
}

}  // namespace qyolo
