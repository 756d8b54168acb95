// YOLOv5 post-processing as ultralytics v7.0 validates: head decoding for trimmed models,
// multi-label class-aware NMS, and mapping boxes back to the original image.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "qyolo/coco.h"
#include "qyolo/vision.h"

namespace qyolo {

std::vector<Detection> non_max_suppression(const float* predictions, int64_t rows, int64_t row_size,
                                           const NmsOptions& options) {
  const int64_t classes = row_size - 5;
  std::vector<Detection> candidates;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = predictions + r * row_size;
    const float obj = p[4];
    if (!(obj > options.conf_threshold)) continue;
    const Detection box{p[0] - p[2] / 2, p[1] - p[3] / 2, p[0] + p[2] / 2, p[1] + p[3] / 2, 0, 0};
    if (options.multi_label && classes > 1) {
      for (int64_t c = 0; c < classes; ++c) {
        const float score = p[5 + c] * obj;
        if (score > options.conf_threshold) {
          Detection d = box;
          d.score = score;
          d.class_id = static_cast<int>(c);
          candidates.push_back(d);
        }
      }
    } else {
      int64_t best = 0;
      for (int64_t c = 1; c < classes; ++c) {
        if (p[5 + c] * obj > p[5 + best] * obj) best = c;
      }
      const float score = p[5 + best] * obj;
      if (score > options.conf_threshold) {
        Detection d = box;
        d.score = score;
        d.class_id = static_cast<int>(best);
        candidates.push_back(d);
      }
    }
  }
  // Highest score first; ties keep candidate order, as torchvision's stable sort does.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });
  if (static_cast<int64_t>(candidates.size()) > options.max_nms) {
    candidates.resize(options.max_nms);
  }

  // Class-aware NMS: ultralytics offsets every box by class * 7680 so classes never overlap.
  // Running each class on its own is equivalent and much faster; the offset is still applied
  // so that IoUs round exactly as in float32 on the shifted coordinates.
  constexpr float kMaxWh = 7680.0f;
  const size_t n = candidates.size();
  std::vector<float> x1(n), y1(n), x2(n), y2(n), area(n);
  for (size_t i = 0; i < n; ++i) {
    const float offset = options.agnostic ? 0.0f : candidates[i].class_id * kMaxWh;
    x1[i] = candidates[i].x1 + offset;
    y1[i] = candidates[i].y1 + offset;
    x2[i] = candidates[i].x2 + offset;
    y2[i] = candidates[i].y2 + offset;
    area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
  }
  std::vector<std::vector<size_t>> by_class;
  if (options.agnostic) {
    by_class.emplace_back(n);
    std::iota(by_class[0].begin(), by_class[0].end(), 0);
  } else {
    int max_class = -1;
    for (const auto& d : candidates) max_class = std::max(max_class, d.class_id);
    by_class.resize(max_class + 1);
    for (size_t i = 0; i < n; ++i) by_class[candidates[i].class_id].push_back(i);
  }
  std::vector<char> suppressed(n, 0);
  std::vector<size_t> keep;
  for (const auto& group : by_class) {
    for (size_t a = 0; a < group.size(); ++a) {
      const size_t i = group[a];
      if (suppressed[i]) continue;
      keep.push_back(i);
      for (size_t b = a + 1; b < group.size(); ++b) {
        const size_t j = group[b];
        if (suppressed[j]) continue;
        const float w = std::max(0.0f, std::min(x2[i], x2[j]) - std::max(x1[i], x1[j]));
        const float h = std::max(0.0f, std::min(y2[i], y2[j]) - std::max(y1[i], y1[j]));
        const float inter = w * h;
        if (inter / (area[i] + area[j] - inter) > options.iou_threshold) suppressed[j] = 1;
      }
    }
  }
  std::sort(keep.begin(), keep.end());  // back to score order across classes
  if (static_cast<int>(keep.size()) > options.max_det) keep.resize(options.max_det);
  std::vector<Detection> out;
  out.reserve(keep.size());
  for (size_t i : keep) out.push_back(candidates[i]);
  return out;
}

void scale_boxes(const Letterbox& p, std::vector<Detection>& detections) {
  const float w = static_cast<float>(p.original_width), h = static_cast<float>(p.original_height);
  for (Detection& d : detections) {
    d.x1 = std::clamp((d.x1 - p.pad_x) / p.gain, 0.0f, w);
    d.x2 = std::clamp((d.x2 - p.pad_x) / p.gain, 0.0f, w);
    d.y1 = std::clamp((d.y1 - p.pad_y) / p.gain, 0.0f, h);
    d.y2 = std::clamp((d.y2 - p.pad_y) / p.gain, 0.0f, h);
  }
}

Expected<HeadAnchors> parse_anchors(const std::string& text) {
  HeadAnchors out;
  std::stringstream levels(text);
  std::string level;
  int index = 0;
  while (std::getline(levels, level, ';')) {
    if (index >= 3) break;
    std::stringstream values(level);
    std::string value;
    int k = 0;
    while (std::getline(values, value, ',')) {
      if (k >= 6) break;
      try {
        out.anchors[index][k++] = std::stof(value);
      } catch (...) {
        return invalid_argument("bad anchor value '", value, "' in '", text, "'");
      }
    }
    if (k != 6) return invalid_argument("anchors: level ", index, " needs 6 numbers (3 w,h pairs)");
    ++index;
  }
  if (index != 3) {
    return invalid_argument("anchors: expected 3 levels separated by ';', got ", index);
  }
  return out;
}

Expected<Tensor> decode_heads(const std::vector<const Tensor*>& heads, const HeadAnchors& anchors) {
  if (heads.size() != 3) {
    return invalid_argument("a trimmed model needs 3 head outputs, got ", heads.size());
  }
  // Order heads by stride: the largest grid is stride 8.
  std::vector<const Tensor*> ordered = heads;
  auto grid_h = [](const Tensor* t) { return t->shape()[2]; };  // H in both layouts
  std::stable_sort(ordered.begin(), ordered.end(),
                   [&](const Tensor* a, const Tensor* b) { return grid_h(a) > grid_h(b); });
  const int64_t batch = ordered[0]->shape()[0];
  int64_t total = 0;
  for (const Tensor* t : ordered) {
    const Shape& s = t->shape();
    const bool nchw = s.size() == 4 && s[1] == 255;
    const bool five = s.size() == 5 && s[1] == 3 && s[4] == 85;
    if ((!nchw && !five) || t->dtype() != DType::kFloat32 || s[0] != batch) {
      return invalid_argument("head output ", shape_str(s), " is not N x 255 x H x W or ",
                              "N x 3 x H x W x 85 float32");
    }
    total += 3 * s[2] * s[3];
  }
  Tensor out(DType::kFloat32, {batch, total, 85});
  float* o = out.data<float>();
  auto sigmoid = [](float v) { return 1.0f / (1.0f + std::exp(-v)); };
  for (int64_t n = 0; n < batch; ++n) {
    int64_t row = 0;
    for (int level = 0; level < 3; ++level) {
      const Tensor* t = ordered[level];
      const Shape& s = t->shape();
      const bool nchw = s.size() == 4;
      const int64_t h = s[2], w = s[3];
      const float stride = anchors.strides[level];
      const float* src = t->data<float>() + n * 255 * h * w;
      for (int64_t a = 0; a < 3; ++a) {
        for (int64_t y = 0; y < h; ++y) {
          for (int64_t x = 0; x < w; ++x, ++row) {
            float* r = o + (n * total + row) * 85;
            for (int64_t k = 0; k < 85; ++k) {
              const float v =
                  nchw ? src[((a * 85 + k) * h + y) * w + x] : src[((a * h + y) * w + x) * 85 + k];
              r[k] = sigmoid(v);
            }
            r[0] = (r[0] * 2.0f + (static_cast<float>(x) - 0.5f)) * stride;
            r[1] = (r[1] * 2.0f + (static_cast<float>(y) - 0.5f)) * stride;
            r[2] = (r[2] * 2.0f) * (r[2] * 2.0f) * anchors.anchors[level][a * 2];
            r[3] = (r[3] * 2.0f) * (r[3] * 2.0f) * anchors.anchors[level][a * 2 + 1];
          }
        }
      }
    }
  }
  return out;
}

const std::array<const char*, 80>& coco_class_names() {
  // One list of names in the project: the COCO module's, as C strings for drawing.
  static const std::array<const char*, 80> names = [] {
    std::array<const char*, 80> out{};
    for (int i = 0; i < 80; ++i) out[i] = coco80_name(i).data();
    return out;
  }();
  return names;
}

}  // namespace qyolo
