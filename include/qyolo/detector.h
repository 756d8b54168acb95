// The detector around the network: image -> letterbox -> model -> decode -> NMS -> boxes in
// original pixels. Shared by `qyolo val` and `qyolo detect`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qyolo/executor.h"
#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/vision.h"

namespace qyolo {

struct DetectorOptions {
  int image_size = 640;  // long side of the resized image
  int canvas = 0;        // letterbox canvas; 0 = the model's input size
  NmsOptions nms;
  HeadAnchors anchors;   // for trimmed models (three raw head outputs)
};

// Time spent per stage, accumulated over calls, in milliseconds.
struct StageTimes {
  double decode = 0, preprocess = 0, inference = 0, nms = 0;
  int64_t images = 0;
};

class Detector {
 public:
  // Prepares the model: a full export (one N x rows x 85 output) or a trimmed one (three
  // head outputs, decoded by qyolo). Errors name the model and what it lacks.
  static Expected<std::unique_ptr<Detector>> create(const Graph& model, DetectorOptions options);

  // Detects objects in one image file; boxes are in the original image's pixels.
  Expected<std::vector<Detection>> detect_file(const std::string& path);
  // The same for an already decoded image.
  Expected<std::vector<Detection>> detect(const Image& image);

  const StageTimes& times() const { return times_; }
  bool trimmed() const { return trimmed_; }
  int canvas() const { return canvas_; }

 private:
  Detector() = default;
  std::unique_ptr<CpuExecutor> executor_;
  DetectorOptions options_;
  std::string input_name_;
  bool trimmed_ = false;
  int canvas_ = 640;
  StageTimes times_;
};

}  // namespace qyolo
