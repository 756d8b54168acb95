// COCOeval (bbox) as pycocotools 2.0.x computes it, on flat arrays.
//
// pycocotools walks (category, area range, image) with Python dicts; here the annotations are
// grouped once by (category, image) into sorted flat arrays, and each category is evaluated
// and accumulated on its own, in parallel: categories share nothing, so the result does not
// depend on the thread count. Every floating-point step follows the Python and C code it
// replaces in the same order (IoU as maskApi.c's bbIou, precision as numpy evaluates it,
// means summed as numpy's pairwise sum), so the numbers agree bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "qyolo/coco.h"

// pycocotools' C and numpy code run without fused multiply-adds; a contraction would change
// the last bit of an IoU or a precision and, at a threshold, a match.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace qyolo {
namespace {

constexpr double kNumpySpacing1 = 2.220446049250313e-16;  // np.spacing(1)
constexpr size_t kNumpyBufferSize = 8192;  // numpy reduces contiguous data in blocks this long
constexpr int kMaxIouThresholds = 32;      // matches are kept as one bit per threshold

// np.linspace(start, stop, num): i * step + start, the last value set to `stop`.
std::vector<double> numpy_linspace(double start, double stop, int num) {
  std::vector<double> values(num);
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) values[i] = static_cast<double>(i) * step + start;
  if (num > 1) values[num - 1] = stop;
  return values;
}

// numpy's pairwise_sum_DOUBLE: eight accumulators up to 128 values, halving above.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double sum = 0.;
    for (size_t i = 0; i < n; ++i) sum += a[i];
    return sum;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) sum += a[i];
    return sum;
  }
  size_t half = n / 2;
  half -= half % 8;
  return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

// np.mean of a 1-D float64 array; -1 for an empty one, as summarize() reports it.
double numpy_mean_or_minus_one(const std::vector<double>& values) {
  if (values.empty()) return -1;
  double sum = 0.;
  for (size_t start = 0; start < values.size(); start += kNumpyBufferSize) {
    sum += pairwise_sum(values.data() + start, std::min(kNumpyBufferSize, values.size() - start));
  }
  return sum / static_cast<double>(values.size());
}

// maskApi.c bbIou for one pair: a crowd ground truth divides by the detection's area only.
inline double box_iou(const std::array<double, 4>& dt, const std::array<double, 4>& gt,
                      bool crowd) {
  const double w = std::fmin(dt[2] + dt[0], gt[2] + gt[0]) - std::fmax(dt[0], gt[0]);
  if (w <= 0) return 0;
  const double h = std::fmin(dt[3] + dt[1], gt[3] + gt[1]) - std::fmax(dt[1], gt[1]);
  if (h <= 0) return 0;
  const double dt_area = dt[2] * dt[3];
  const double gt_area = gt[2] * gt[3];
  const double intersection = w * h;
  const double union_area = crowd ? dt_area : dt_area + gt_area - intersection;
  return intersection / union_area;
}

std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::unordered_map<int64_t, int32_t> positions(const std::vector<int64_t>& ids) {
  std::unordered_map<int64_t, int32_t> map;
  map.reserve(ids.size() * 2);
  for (size_t i = 0; i < ids.size(); ++i) map.emplace(ids[i], static_cast<int32_t>(i));
  return map;
}

int32_t position_of(const std::unordered_map<int64_t, int32_t>& map, int64_t id) {
  const auto it = map.find(id);
  return it == map.end() ? -1 : it->second;
}

// Annotations grouped by (category, image), in the order pycocotools' _prepare() appends
// them, with what evaluation reads copied out into flat arrays; category k holds entries
// [begin[k], begin[k + 1]).
struct Groups {
  std::vector<int64_t> key;  // category * images + image
  std::vector<std::array<double, 4>> box;
  std::vector<double> value;         // ground truth: area; detections: score
  std::vector<int64_t> iscrowd, id;  // ground truth only
  std::vector<size_t> begin;         // per category, plus the end
};

Groups group_by_category_image(std::vector<std::pair<int64_t, int32_t>> entries,
                               const std::vector<CocoAnnotation>& annotations, bool is_gt,
                               size_t num_categories, size_t num_images) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Groups groups;
  const size_t n = entries.size();
  groups.key.resize(n);
  groups.box.resize(n);
  groups.value.resize(n);
  if (is_gt) {
    groups.iscrowd.resize(n);
    groups.id.resize(n);
  }
  for (size_t e = 0; e < n; ++e) {
    const CocoAnnotation& a = annotations[entries[e].second];
    groups.key[e] = entries[e].first;
    groups.box[e] = a.bbox;
    groups.value[e] = is_gt ? a.area : a.score;
    if (is_gt) {
      groups.iscrowd[e] = a.iscrowd;
      groups.id[e] = a.id;
    }
  }
  groups.begin.assign(num_categories + 1, n);
  size_t e = 0;
  for (size_t k = 0; k < num_categories; ++k) {
    while (e < n && groups.key[e] < static_cast<int64_t>(k * num_images)) ++e;
    groups.begin[k] = e;
  }
  return groups;
}

// The detections of one category after per-image evaluation, in pycocotools' concatenation
// order (images ascending, each image's detections by score), with one bit per IoU threshold.
struct CategoryDetections {
  std::vector<double> score;
  std::vector<int32_t> rank;      // position in its image's score order
  std::vector<uint32_t> matched;  // [detection][area]: matched a ground truth with id != 0
  std::vector<uint32_t> ignored;  // [detection][area]
  std::vector<int64_t> num_gt;    // [area]: ground truth neither ignored nor crowd
};

// Per-thread buffers, reused across images and categories.
struct Scratch {
  std::vector<int32_t> dt_order, gt_order;
  std::vector<double> ious;
  std::vector<uint8_t> gt_ignore, gt_ignore_sorted, gt_matched, dt_ignore, dt_matched;
  std::vector<std::pair<double, int32_t>> score_order;
  std::vector<int32_t> selected, sorted_rank;
  std::vector<double> sorted_score;
  std::vector<uint32_t> sorted_matched, sorted_ignored;
  std::vector<int64_t> needed_tp;                 // per recall threshold
  std::vector<std::vector<double>> tp_precision;  // per IoU threshold, at each true positive
  std::vector<std::vector<int32_t>> tp_position;  // where in the ranking that TP is
};

class Evaluator {
 public:
  Evaluator(const CocoDataset& gt, const std::vector<CocoAnnotation>& dt,
            const CocoEvalParams& params)
      : gt_(gt), dt_(dt), p_(params) {}

  void prepare();
  void run(CocoEvalResult& result);

 private:
  void evaluate_category(size_t k, Scratch& s, CategoryDetections& out) const;
  void evaluate_image(size_t gt_begin, size_t num_gts, size_t dt_begin, size_t num_dts, Scratch& s,
                      CategoryDetections& out) const;
  void accumulate_category(size_t k, const CategoryDetections& dets, Scratch& s,
                           CocoEvalResult& result) const;

  const CocoDataset& gt_;
  const std::vector<CocoAnnotation>& dt_;
  const CocoEvalParams& p_;
  size_t num_images_ = 0, num_categories_ = 0;
  Groups gt_groups_, dt_groups_;
};

void Evaluator::prepare() {
  num_images_ = p_.image_ids.size();
  num_categories_ = p_.category_ids.size();
  const auto image_pos = positions(p_.image_ids);
  const auto category_pos = positions(p_.category_ids);
  const int64_t images = static_cast<int64_t>(num_images_);

  // Ground truth: getAnnIds walks the images in sorted order and each image's annotations in
  // file order, keeping those of evaluated categories; loadAnns then looks each id up, so
  // when ids repeat, the last annotation with that id stands in for all of them.
  std::vector<std::pair<int32_t, int32_t>> walk;
  walk.reserve(gt_.annotations.size());
  std::unordered_map<int64_t, int32_t> last_with_id;
  last_with_id.reserve(gt_.annotations.size() * 2);
  for (size_t i = 0; i < gt_.annotations.size(); ++i) {
    const CocoAnnotation& a = gt_.annotations[i];
    last_with_id[a.id] = static_cast<int32_t>(i);
    const int32_t image = position_of(image_pos, a.image_id);
    if (image >= 0 && position_of(category_pos, a.category_id) >= 0) {
      walk.emplace_back(image, static_cast<int32_t>(i));
    }
  }
  std::stable_sort(walk.begin(), walk.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<int64_t, int32_t>> entries;
  entries.reserve(walk.size());
  for (const auto& [image_unused, i] : walk) {
    const int32_t resolved = last_with_id[gt_.annotations[i].id];
    const CocoAnnotation& a = gt_.annotations[resolved];
    const int32_t image = position_of(image_pos, a.image_id);
    const int32_t category = position_of(category_pos, a.category_id);
    if (image >= 0 && category >= 0) entries.emplace_back(category * images + image, resolved);
  }
  gt_groups_ = group_by_category_image(std::move(entries), gt_.annotations, true, num_categories_,
                                       num_images_);

  // Detections have ids 1..N, so file order within an image is all that matters.
  entries.clear();
  entries.reserve(dt_.size());
  for (size_t i = 0; i < dt_.size(); ++i) {
    const int32_t image = position_of(image_pos, dt_[i].image_id);
    const int32_t category = position_of(category_pos, dt_[i].category_id);
    if (image >= 0 && category >= 0) {
      entries.emplace_back(category * images + image, static_cast<int32_t>(i));
    }
  }
  dt_groups_ =
      group_by_category_image(std::move(entries), dt_, false, num_categories_, num_images_);
}

// evaluateImg() for every area range at once, for one (category, image) with any annotation.
void Evaluator::evaluate_image(size_t gt_begin, size_t num_gts, size_t dt_begin, size_t num_dts,
                               Scratch& s, CategoryDetections& out) const {
  const size_t T = p_.iou_thresholds.size();
  const size_t A = p_.area_ranges.size();
  const size_t max_det = static_cast<size_t>(p_.max_detections.back());
  const std::array<double, 4>* gt_box = gt_groups_.box.data() + gt_begin;
  const double* gt_area = gt_groups_.value.data() + gt_begin;
  const int64_t* gt_crowd = gt_groups_.iscrowd.data() + gt_begin;
  const int64_t* gt_id = gt_groups_.id.data() + gt_begin;

  // Highest score first, ties in file order (np.argsort(-score, kind='mergesort')).
  const double* score = dt_groups_.value.data();
  s.dt_order.resize(num_dts);
  std::iota(s.dt_order.begin(), s.dt_order.end(), static_cast<int32_t>(dt_begin));
  std::stable_sort(s.dt_order.begin(), s.dt_order.end(),
                   [score](int32_t a, int32_t b) { return score[a] > score[b]; });
  const size_t D = std::min(num_dts, max_det);
  const size_t G = num_gts;

  // computeIoU: rows are the sorted detections, columns the ground truth in group order.
  s.ious.resize(D * G);
  for (size_t d = 0; d < D; ++d) {
    const std::array<double, 4>& det_box = dt_groups_.box[s.dt_order[d]];
    for (size_t g = 0; g < G; ++g) {
      // The crowd flags pass through a uint8 array on their way to C.
      s.ious[d * G + g] = box_iou(det_box, gt_box[g], (gt_crowd[g] & 0xff) != 0);
    }
  }

  const size_t first = out.score.size();
  for (size_t d = 0; d < D; ++d) {
    out.score.push_back(score[s.dt_order[d]]);
    out.rank.push_back(static_cast<int32_t>(d));
  }
  const size_t total = first + D;

  out.matched.resize(total * A);
  out.ignored.resize(total * A);
  s.gt_ignore.resize(G);
  s.gt_ignore_sorted.resize(G);
  s.gt_order.resize(G);
  for (size_t a = 0; a < A; ++a) {
    const double lo = p_.area_ranges[a][0], hi = p_.area_ranges[a][1];
    int64_t not_ignored = 0;
    for (size_t g = 0; g < G; ++g) {
      s.gt_ignore[g] = gt_crowd[g] != 0 || gt_area[g] < lo || gt_area[g] > hi;
      not_ignored += !s.gt_ignore[g];
    }
    out.num_gt[a] += not_ignored;
    // Ignored ground truth last, otherwise in group order (a stable argsort of the flags).
    size_t n = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t g = 0; g < G; ++g) {
        if (s.gt_ignore[g] == pass) {
          s.gt_ignore_sorted[n] = s.gt_ignore[g];
          s.gt_order[n++] = static_cast<int32_t>(g);
        }
      }
    }

    s.dt_matched.assign(T * D, 0);
    s.dt_ignore.assign(T * D, 0);
    if (D > 0 && G > 0) {
      s.gt_matched.assign(T * G, 0);
      for (size_t t = 0; t < T; ++t) {
        const double threshold = std::min(p_.iou_thresholds[t], 1 - 1e-10);
        uint8_t* gt_matched = &s.gt_matched[t * G];
        for (size_t d = 0; d < D; ++d) {
          const double* iou_row = &s.ious[d * G];
          double best = threshold;
          int64_t m = -1;
          for (size_t j = 0; j < G; ++j) {
            const int32_t g = s.gt_order[j];
            // A ground truth matched already is taken, unless it is a crowd.
            if (gt_matched[j] && gt_crowd[g] == 0) continue;
            // Matched to a real ground truth, and only ignored ones are left: stop.
            if (m > -1 && !s.gt_ignore_sorted[m] && s.gt_ignore_sorted[j]) break;
            if (iou_row[g] < best) continue;
            best = iou_row[g];
            m = static_cast<int64_t>(j);
          }
          if (m == -1) continue;
          s.dt_ignore[t * D + d] = s.gt_ignore_sorted[m];
          // dtMatches holds the ground truth's id, and accumulate() reads 0 as "no match".
          s.dt_matched[t * D + d] = gt_id[s.gt_order[m]] != 0;
          gt_matched[m] = 1;
        }
      }
    }
    for (size_t d = 0; d < D; ++d) {
      const std::array<double, 4>& det_box = dt_groups_.box[s.dt_order[d]];
      const double area = det_box[2] * det_box[3];
      const bool outside = area < lo || area > hi;
      uint32_t matched_bits = 0, ignored_bits = 0;
      for (size_t t = 0; t < T; ++t) {
        const bool is_matched = s.dt_matched[t * D + d];
        const bool is_ignored = s.dt_ignore[t * D + d] || (!is_matched && outside);
        matched_bits |= static_cast<uint32_t>(is_matched) << t;
        ignored_bits |= static_cast<uint32_t>(is_ignored) << t;
      }
      out.matched[(first + d) * A + a] = matched_bits;
      out.ignored[(first + d) * A + a] = ignored_bits;
    }
  }
}

void Evaluator::evaluate_category(size_t k, Scratch& s, CategoryDetections& out) const {
  const size_t A = p_.area_ranges.size();
  out.score.clear();
  out.rank.clear();
  out.matched.clear();
  out.ignored.clear();
  out.num_gt.assign(A, 0);
  size_t g = gt_groups_.begin[k], g_end = gt_groups_.begin[k + 1];
  size_t d = dt_groups_.begin[k], d_end = dt_groups_.begin[k + 1];
  // Walk the images that have ground truth or detections of this category, ascending.
  while (g < g_end || d < d_end) {
    const int64_t key = std::min(g < g_end ? gt_groups_.key[g] : INT64_MAX,
                                 d < d_end ? dt_groups_.key[d] : INT64_MAX);
    const size_t g0 = g, d0 = d;
    while (g < g_end && gt_groups_.key[g] == key) ++g;
    while (d < d_end && dt_groups_.key[d] == key) ++d;
    evaluate_image(g0, g - g0, d0, d - d0, s, out);
  }
}

// accumulate() for one category: every (area, max detections, IoU threshold).
//
// pycocotools computes recall and precision after every detection, takes the running maximum
// of precision from the right, and reads it where recall first reaches each recall threshold.
// Only a true positive raises precision (a false positive lowers it, an ignored detection
// leaves it), so the maximum from any point on is attained at that point or at a later true
// positive; and recall first reaches a threshold at a true positive (or at the first
// detection, for a threshold of 0). So precision is needed at true positives only: the same
// expression evaluated at fewer points, hence the same numbers, with a fraction of the
// divisions and one pass over the detections for all thresholds.
void Evaluator::accumulate_category(size_t k, const CategoryDetections& dets, Scratch& s,
                                    CocoEvalResult& result) const {
  const size_t T = p_.iou_thresholds.size();
  const size_t R = p_.recall_thresholds.size();
  const size_t A = p_.area_ranges.size();
  const size_t M = p_.max_detections.size();
  const size_t n = dets.score.size();
  for (size_t a = 0; a < A; ++a) result.num_gt[k * A + a] = dets.num_gt[a];

  // One stable sort serves every max-detections setting: a subset of a stably sorted list,
  // kept in order, is the stable sort of that subset.
  s.score_order.resize(n);
  for (size_t i = 0; i < n; ++i) s.score_order[i] = {dets.score[i], static_cast<int32_t>(i)};
  std::stable_sort(s.score_order.begin(), s.score_order.end(),
                   [](const auto& x, const auto& y) { return x.first > y.first; });

  // Gathered once into ranking order, so the passes below read memory in sequence.
  s.sorted_score.resize(n);
  s.sorted_rank.resize(n);
  s.sorted_matched.resize(n * A);
  s.sorted_ignored.resize(n * A);
  for (size_t i = 0; i < n; ++i) {
    const size_t from = static_cast<size_t>(s.score_order[i].second);
    s.sorted_score[i] = s.score_order[i].first;
    s.sorted_rank[i] = dets.rank[from];
    std::copy_n(&dets.matched[from * A], A, &s.sorted_matched[i * A]);
    std::copy_n(&dets.ignored[from * A], A, &s.sorted_ignored[i * A]);
  }

  s.tp_precision.resize(T);
  s.tp_position.resize(T);
  s.needed_tp.resize(R);
  for (size_t m = 0; m < M; ++m) {
    s.selected.clear();  // positions in the ranking of the detections within maxDets
    for (size_t i = 0; i < n; ++i) {
      if (s.sorted_rank[i] < p_.max_detections[m]) s.selected.push_back(static_cast<int32_t>(i));
    }
    const size_t nd = s.selected.size();
    for (size_t a = 0; a < A; ++a) {
      const int64_t npig = dets.num_gt[a];
      if (npig == 0) continue;  // precision and recall stay -1
      const double npig_d = static_cast<double>(npig);
      // np.searchsorted(rc, recThrs, side='left') with rc = tp / npig: the first detection at
      // which the true positives reach the least n with n / npig >= the threshold.
      for (size_t r = 0; r < R; ++r) {
        const double threshold = p_.recall_thresholds[r];
        int64_t need =
            static_cast<int64_t>(std::clamp(std::ceil(threshold * npig_d), 0.0, npig_d + 1));
        while (need > 0 && static_cast<double>(need - 1) / npig_d >= threshold) --need;
        while (need <= npig && static_cast<double>(need) / npig_d < threshold) ++need;
        s.needed_tp[r] = need;
      }
      uint32_t tp_count[kMaxIouThresholds] = {}, fp_count[kMaxIouThresholds] = {};
      for (size_t t = 0; t < T; ++t) {
        s.tp_precision[t].clear();
        s.tp_position[t].clear();
      }
      for (size_t i = 0; i < nd; ++i) {
        const size_t det = static_cast<size_t>(s.selected[i]) * A + a;
        const uint32_t counted = ~s.sorted_ignored[det];
        const uint32_t tp_bits = s.sorted_matched[det] & counted;
        const uint32_t fp_bits = ~s.sorted_matched[det] & counted;
        for (size_t t = 0; t < T; ++t) {
          if ((tp_bits >> t) & 1u) {
            const double tp_sum = ++tp_count[t], fp_sum = fp_count[t];
            s.tp_precision[t].push_back(tp_sum / (fp_sum + tp_sum + kNumpySpacing1));
            s.tp_position[t].push_back(static_cast<int32_t>(i));
          } else {
            fp_count[t] += (fp_bits >> t) & 1u;
          }
        }
      }
      for (size_t t = 0; t < T; ++t) {
        const int64_t tps = tp_count[t];
        result.recall[result.recall_index(t, k, a, m)] = nd ? static_cast<double>(tps) / npig_d : 0;
        std::vector<double>& best = s.tp_precision[t];
        for (size_t i = best.size(); i-- > 1;) {
          if (best[i] > best[i - 1]) best[i - 1] = best[i];
        }
        for (size_t r = 0; r < R; ++r) {
          const int64_t need = s.needed_tp[r];
          const size_t index = result.precision_index(t, r, k, a, m);
          if (nd == 0 || need > tps) {  // recall never gets there: numpy leaves 0
            result.precision[index] = 0;
            result.scores[index] = 0;
          } else if (need == 0) {  // the first detection; its precision is 0 unless a TP
            result.precision[index] = tps ? best[0] : 0;
            result.scores[index] = s.sorted_score[s.selected[0]];
          } else {
            result.precision[index] = best[need - 1];
            result.scores[index] = s.sorted_score[s.selected[s.tp_position[t][need - 1]]];
          }
        }
      }
    }
  }
}

void Evaluator::run(CocoEvalResult& result) {
  const size_t K = num_categories_;
#pragma omp parallel
  {
    Scratch scratch;
    CategoryDetections dets;
#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < static_cast<int64_t>(K); ++k) {
      evaluate_category(static_cast<size_t>(k), scratch, dets);
      accumulate_category(static_cast<size_t>(k), dets, scratch, result);
    }
  }
  result.num_ground_truth = static_cast<int64_t>(gt_groups_.key.size());
  result.num_detections = static_cast<int64_t>(dt_groups_.key.size());
}

// One line of summarize(): the mean of the entries above -1 at the chosen IoU threshold (all
// when NaN), area range and max detections.
double summarize_one(const CocoEvalResult& r, bool ap, double iou_threshold,
                     const std::string& area_label, int max_det) {
  const CocoEvalParams& p = r.params;
  const size_t T = p.iou_thresholds.size(), R = p.recall_thresholds.size();
  const size_t K = p.category_ids.size();
  std::vector<size_t> t_list, a_list, m_list;
  for (size_t t = 0; t < T; ++t) {
    if (std::isnan(iou_threshold) || p.iou_thresholds[t] == iou_threshold) t_list.push_back(t);
  }
  for (size_t a = 0; a < p.area_labels.size(); ++a) {
    if (p.area_labels[a] == area_label) a_list.push_back(a);
  }
  for (size_t m = 0; m < p.max_detections.size(); ++m) {
    if (p.max_detections[m] == max_det) m_list.push_back(m);
  }
  // numpy pairs the area and max-detections index lists, broadcasting a single one.
  std::vector<std::pair<size_t, size_t>> am;
  if (a_list.size() == m_list.size() || a_list.size() == 1 || m_list.size() == 1) {
    const size_t count =
        a_list.empty() || m_list.empty() ? 0 : std::max(a_list.size(), m_list.size());
    for (size_t i = 0; i < count; ++i) {
      am.emplace_back(a_list[a_list.size() == 1 ? 0 : i], m_list[m_list.size() == 1 ? 0 : i]);
    }
  }
  std::vector<double> values;
  for (size_t t : t_list) {
    if (ap) {
      for (size_t rr = 0; rr < R; ++rr) {
        for (size_t k = 0; k < K; ++k) {
          for (const auto& [a, m] : am) {
            const double v = r.precision[r.precision_index(t, rr, k, a, m)];
            if (v > -1) values.push_back(v);
          }
        }
      }
    } else {
      for (size_t k = 0; k < K; ++k) {
        for (const auto& [a, m] : am) {
          const double v = r.recall[r.recall_index(t, k, a, m)];
          if (v > -1) values.push_back(v);
        }
      }
    }
  }
  return numpy_mean_or_minus_one(values);
}

struct SummaryLine {
  bool ap;
  double iou_threshold;  // NaN: all
  const char* area;
  int max_det_slot;  // index into maxDets, or -1 for the literal 100
};

// summarize()'s _summarizeDets, in order.
const SummaryLine kSummaryLines[12] = {
    {true, NAN, "all", -1},   {true, .5, "all", 2},      {true, .75, "all", 2},
    {true, NAN, "small", 2},  {true, NAN, "medium", 2},  {true, NAN, "large", 2},
    {false, NAN, "all", 0},   {false, NAN, "all", 1},    {false, NAN, "all", 2},
    {false, NAN, "small", 2}, {false, NAN, "medium", 2}, {false, NAN, "large", 2}};

int summary_max_det(const CocoEvalParams& p, const SummaryLine& line) {
  if (line.max_det_slot < 0) return 100;
  if (line.max_det_slot >= static_cast<int>(p.max_detections.size())) return -1;
  return p.max_detections[line.max_det_slot];
}

Status validate(const CocoEvalParams& p) {
  if (p.iou_thresholds.empty() || p.iou_thresholds.size() > kMaxIouThresholds) {
    return invalid_argument("COCOeval needs 1 to ", kMaxIouThresholds, " IoU thresholds, got ",
                            p.iou_thresholds.size());
  }
  if (p.recall_thresholds.empty()) return invalid_argument("COCOeval needs recall thresholds");
  if (p.max_detections.empty()) return invalid_argument("COCOeval needs max detections");
  for (int m : p.max_detections) {
    if (m < 0) return invalid_argument("COCOeval max detections must be >= 0, got ", m);
  }
  if (p.area_ranges.empty() || p.area_ranges.size() != p.area_labels.size()) {
    return invalid_argument("COCOeval needs one label per area range, got ", p.area_ranges.size(),
                            " ranges and ", p.area_labels.size(), " labels");
  }
  return Status::ok();
}

}  // namespace

CocoEvalParams::CocoEvalParams()
    : iou_thresholds(numpy_linspace(.5, 0.95, 10)),
      recall_thresholds(numpy_linspace(.0, 1.00, 101)),
      max_detections{1, 10, 100},
      area_ranges{{0, 1e5 * 1e5}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e5 * 1e5}},
      area_labels{"all", "small", "medium", "large"} {}

size_t CocoEvalResult::precision_index(size_t t, size_t r, size_t k, size_t a, size_t m) const {
  const size_t R = params.recall_thresholds.size(), K = params.category_ids.size();
  const size_t A = params.area_ranges.size(), M = params.max_detections.size();
  return (((t * R + r) * K + k) * A + a) * M + m;
}

size_t CocoEvalResult::recall_index(size_t t, size_t k, size_t a, size_t m) const {
  const size_t K = params.category_ids.size(), A = params.area_ranges.size();
  const size_t M = params.max_detections.size();
  return ((t * K + k) * A + a) * M + m;
}

Expected<CocoEvalResult> evaluate_coco_bbox(const CocoDataset& ground_truth,
                                            const std::vector<CocoAnnotation>& detections,
                                            const CocoEvalParams& params) {
  QYOLO_RETURN_IF_ERROR(validate(params));
  CocoEvalResult result;
  CocoEvalParams& p = result.params;
  p = params;
  if (p.image_ids.empty()) {
    for (const CocoImage& image : ground_truth.images) p.image_ids.push_back(image.id);
  }
  if (p.category_ids.empty()) {
    for (const CocoCategory& category : ground_truth.categories) {
      p.category_ids.push_back(category.id);
    }
  }
  p.image_ids = sorted_unique(std::move(p.image_ids));
  p.category_ids = sorted_unique(std::move(p.category_ids));
  std::sort(p.max_detections.begin(), p.max_detections.end());

  const size_t T = p.iou_thresholds.size(), R = p.recall_thresholds.size();
  const size_t K = p.category_ids.size(), A = p.area_ranges.size();
  const size_t M = p.max_detections.size();
  result.precision.assign(T * R * K * A * M, -1.0);
  result.scores.assign(T * R * K * A * M, -1.0);
  result.recall.assign(T * K * A * M, -1.0);
  result.num_gt.assign(K * A, 0);

  Evaluator evaluator(ground_truth, detections, p);
  evaluator.prepare();
  evaluator.run(result);

  for (size_t i = 0; i < 12; ++i) {
    const SummaryLine& line = kSummaryLines[i];
    const int max_det = summary_max_det(p, line);
    result.stats[i] =
        max_det < 0 ? -1 : summarize_one(result, line.ap, line.iou_threshold, line.area, max_det);
  }
  return result;
}

std::vector<CocoCategoryAp> coco_per_category_ap(const CocoEvalResult& result) {
  const CocoEvalParams& p = result.params;
  const size_t T = p.iou_thresholds.size(), R = p.recall_thresholds.size();
  const size_t A = p.area_ranges.size();
  const size_t all = static_cast<size_t>(
      std::find(p.area_labels.begin(), p.area_labels.end(), "all") - p.area_labels.begin());
  const size_t m = p.max_detections.size() - 1;
  std::vector<CocoCategoryAp> out;
  for (size_t k = 0; k < p.category_ids.size(); ++k) {
    CocoCategoryAp entry;
    entry.category_id = p.category_ids[k];
    if (all == A) {
      out.push_back(entry);
      continue;
    }
    entry.num_gt = result.num_gt[k * A + all];
    std::vector<double> every, at50;
    for (size_t t = 0; t < T; ++t) {
      for (size_t r = 0; r < R; ++r) {
        const double v = result.precision[result.precision_index(t, r, k, all, m)];
        if (v <= -1) continue;
        every.push_back(v);
        if (p.iou_thresholds[t] == .5) at50.push_back(v);
      }
    }
    entry.ap = numpy_mean_or_minus_one(every);
    entry.ap50 = numpy_mean_or_minus_one(at50);
    out.push_back(entry);
  }
  return out;
}

std::string coco_summary_text(const CocoEvalResult& result) {
  const CocoEvalParams& p = result.params;
  std::string text;
  for (size_t i = 0; i < 12; ++i) {
    const SummaryLine& line = kSummaryLines[i];
    char iou[32];
    if (std::isnan(line.iou_threshold)) {
      std::snprintf(iou, sizeof(iou), "%0.2f:%0.2f", p.iou_thresholds.front(),
                    p.iou_thresholds.back());
    } else {
      std::snprintf(iou, sizeof(iou), "%0.2f", line.iou_threshold);
    }
    char buffer[160];
    std::snprintf(buffer, sizeof(buffer),
                  " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                  line.ap ? "Average Precision" : "Average Recall", line.ap ? "(AP)" : "(AR)", iou,
                  line.area, summary_max_det(p, line), result.stats[i]);
    text += buffer;
  }
  return text;
}

}  // namespace qyolo
