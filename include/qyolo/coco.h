// COCO detection data: instances annotations, detection results, and COCOeval (bbox).
//
// The evaluator reproduces pycocotools 2.0.x COCOeval with iouType 'bbox' number for number:
// the same matching, the same accumulation, and the same 12 summary statistics (the mean is
// even summed in numpy's order, so the stats agree to the last bit).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "qyolo/status.h"

namespace qyolo {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;  // "" when the file has none
  int64_t width = 0;      // 0 when the file has none
  int64_t height = 0;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

// One ground-truth annotation or one detection (then `score` is set and `iscrowd` is 0).
struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, width, height in pixels
  double area = 0;               // ground truth: the file's 'area'; detections: w * h
  int64_t iscrowd = 0;
  double score = 0;
};

struct CocoDataset {
  std::vector<CocoImage> images;
  std::vector<CocoCategory> categories;
  std::vector<CocoAnnotation> annotations;

  // Rebuilds the id lookups; call it after changing `images` or `categories` by hand.
  void build_index();
  // The image or category with this id, or nullptr (the last one when ids repeat).
  const CocoImage* find_image(int64_t id) const;
  const CocoCategory* find_category(int64_t id) const;

 private:
  std::unordered_map<int64_t, size_t> image_index_;
  std::unordered_map<int64_t, size_t> category_index_;
};

// Reads an instances file ({"images": [...], "annotations": [...], "categories": [...]}).
// Annotations need id, image_id, category_id, bbox, area and iscrowd, as pycocotools does;
// images and categories need id. Errors name the file and either the line:column of a JSON
// syntax error or the array element and field at fault, e.g. "annotations[12]: missing 'area'".
Expected<CocoDataset> load_coco_annotations(const std::string& path);

// Reads a detection results file (a JSON array of {image_id, category_id, bbox, score}) as
// pycocotools' COCO.loadRes does for boxes: ids become 1..N, area = w * h, iscrowd = 0.
// A detection whose image_id is not an image of `ground_truth` is an error naming it
// (pycocotools asserts). An empty array gives an empty vector (pycocotools fails on it).
Expected<std::vector<CocoAnnotation>> load_coco_results(const std::string& path,
                                                        const CocoDataset& ground_truth);

// Writes detections as a results file, one object per line: {"image_id", "category_id",
// "bbox", "score"}, with the bbox rounded to 3 decimals and the score to 5, as ultralytics'
// save_one_json does (round(x, 3), round(score, 5)), each written as the shortest decimal
// that reads back to that rounded double.
Status write_coco_results(const std::string& path, const std::vector<CocoAnnotation>& detections);

inline constexpr int kCoco80Classes = 80;
// ultralytics' coco80_to_coco91_class(): the 80 contiguous classes onto COCO's sparse ids.
inline constexpr std::array<int, kCoco80Classes> kCoco91Ids = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};

// The COCO category id (1..90) of a contiguous 80-class index, as ultralytics'
// coco80_to_coco91_class(); -1 when `class_index` is outside 0..79. Inline, so that tools
// built without qyolo's libraries (the GPU runtime tools) map classes the same way.
inline int coco80_to_91(int class_index) {
  if (class_index < 0 || class_index >= kCoco80Classes) return -1;
  return kCoco91Ids[class_index];
}
// The COCO name of a contiguous 80-class index; "" when outside 0..79.
std::string_view coco80_name(int class_index);

// COCOeval parameters; the default constructor gives pycocotools' bbox defaults.
struct CocoEvalParams {
  CocoEvalParams();

  std::vector<int64_t> image_ids;                  // empty: every image of the ground truth
  std::vector<int64_t> category_ids;               // empty: every category of the ground truth
  std::vector<double> iou_thresholds;              // np.linspace(.5, .95, 10); at most 32
  std::vector<double> recall_thresholds;           // np.linspace(0, 1, 101)
  std::vector<int> max_detections;                 // {1, 10, 100}
  std::vector<std::array<double, 2>> area_ranges;  // all, small, medium, large
  std::vector<std::string> area_labels;            // "all", "small", "medium", "large"
};

// pycocotools' COCOeval.eval and .stats.
struct CocoEvalResult {
  CocoEvalParams params;  // image_ids and category_ids as evaluated: sorted, unique

  // [T][R][K][A][M] (iou threshold, recall threshold, category, area range, max detections);
  // -1 where a category has no ground truth in that area range.
  std::vector<double> precision;
  std::vector<double> scores;   // the score at which each precision entry was reached
  std::vector<double> recall;   // [T][K][A][M]; -1 as for precision
  std::vector<int64_t> num_gt;  // [K][A]: ground truth that is neither crowd nor out of range

  // AP@[.5:.95], AP@.5, AP@.75, AP small/medium/large, AR@1, AR@10, AR@100, AR small/medium/
  // large: the order of pycocotools' summarize(); -1 where there is nothing to average.
  std::array<double, 12> stats{};

  int64_t num_ground_truth = 0;  // annotations on evaluated images and categories
  int64_t num_detections = 0;    // detections on evaluated images and categories

  size_t precision_index(size_t t, size_t r, size_t k, size_t a, size_t m) const;
  size_t recall_index(size_t t, size_t k, size_t a, size_t m) const;
};

// Runs evaluate(), accumulate() and summarize() of pycocotools' COCOeval (iouType 'bbox').
// Detections are matched by box; their `id` and `area` are not read (area is w * h, as
// loadRes sets it). With no detections at all, AP and AR are 0 wherever there is ground truth
// (what pycocotools gives when no detection is on an evaluated category; its loadRes refuses
// an empty list) and -1 elsewhere. Errors only for parameters pycocotools cannot run with.
Expected<CocoEvalResult> evaluate_coco_bbox(const CocoDataset& ground_truth,
                                            const std::vector<CocoAnnotation>& detections,
                                            const CocoEvalParams& params = {});

// AP of one category over the "all" area range at the largest max-detections setting.
struct CocoCategoryAp {
  int64_t category_id = 0;
  int64_t num_gt = 0;  // ground truth that counts (not crowd)
  double ap = -1;      // mean precision over IoU 0.50:0.95; -1 without ground truth
  double ap50 = -1;    // at IoU 0.50
};
std::vector<CocoCategoryAp> coco_per_category_ap(const CocoEvalResult& result);

// pycocotools' summarize() printout: 12 lines, each ending in '\n'.
std::string coco_summary_text(const CocoEvalResult& result);

}  // namespace qyolo
