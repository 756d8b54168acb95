// The detector around the network: image -> letterbox -> model -> decode -> NMS -> boxes in
// original pixels. Shared by `qyolo val` and `qyolo detect`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qyolo/executor.h"
#include "qyolo/graph.h"
#include "qyolo/int8.h"
#include "qyolo/status.h"
#include "qyolo/vision.h"

namespace qyolo {

struct DetectorOptions {
  int image_size = 640;  // long side of the resized image
  int canvas = 0;        // letterbox canvas; 0 = the model's input size
  NmsOptions nms;
  HeadAnchors anchors;  // for trimmed models (three raw head outputs)
  // INT8 on the CPU reference backend: activation scales (a calibration cache) and the
  // layers kept in FP16. Off: the FP32 executor.
  bool int8 = false;
  std::map<std::string, float> scales;
  std::set<std::string> fp16_layers;
  // Engines on the cuda target: the GPU (runtime::DeviceOptions::device_index).
  int device_index = 0;
  // Engines on the cuda target letterbox, decode and NMS on the GPU (qyolo/detect_pipeline.h)
  // where the engine's I/O formats and these options allow; true keeps them on the host.
  bool host_pipeline = false;
};

// Time spent per stage, accumulated over calls, in milliseconds.
struct StageTimes {
  double decode = 0, preprocess = 0, inference = 0, nms = 0;
  int64_t images = 0;
};

// The letterbox canvas for `model`: its one input must be N x 3 x H x W; a fixed square input
// sets the canvas (and must agree with `canvas` when that is given), a dynamic one takes
// `canvas` or else `image_size`. `image_size` must fit the canvas.
Expected<int> model_canvas(const Graph& model, int image_size, int canvas);

class Detector {
 public:
  // Prepares the model: a full export (one N x rows x 85 output) or a trimmed one (three
  // head outputs, decoded by qyolo). Errors name the model and what it lacks.
  static Expected<std::unique_ptr<Detector>> create(const Graph& model, DetectorOptions options);
  // Runs an engine file (`qyolo build`) on the engine's target through qyolo/runtime.h; the
  // precision and I/O formats are the engine's, so options.int8/scales are ignored.
  static Expected<std::unique_ptr<Detector>> create_from_engine(const std::string& engine_path,
                                                                DetectorOptions options);

  // Detects objects in one image file; boxes are in the original image's pixels.
  Expected<std::vector<Detection>> detect_file(const std::string& path);
  // The same for an already decoded image.
  Expected<std::vector<Detection>> detect(const Image& image);

  const StageTimes& times() const { return times_; }
  bool trimmed() const { return trimmed_; }
  // Where letterbox, decode and NMS run: "host", or "gpu" for an engine's GPU pipeline.
  std::string pipeline() const;
  // The INT8 backend's per-layer precision, empty in FP32.
  std::vector<LayerPrecision> layer_precisions() const;
  int canvas() const { return canvas_; }

 private:
  Detector() = default;
  Expected<std::map<std::string, Tensor>> run(std::map<std::string, Tensor> inputs);
  std::unique_ptr<CpuExecutor> executor_;
  std::unique_ptr<Int8Executor> int8_;
  struct EngineRunner;  // detector_engine.cpp
  std::shared_ptr<EngineRunner> engine_;
  Expected<std::map<std::string, Tensor>> run_engine(const std::map<std::string, Tensor>& inputs);
  std::vector<LayerPrecision> engine_layer_precisions() const;
  // The GPU pipeline for one image: false (and nothing in `detections`) when this detector has
  // none, or when the image had more candidates than the GPU's buffer and must go the host way.
  Expected<bool> detect_on_device(const Image& image, std::vector<Detection>* detections);
  DetectorOptions options_;
  std::string input_name_;
  bool trimmed_ = false;
  int canvas_ = 640;
  StageTimes times_;
};

}  // namespace qyolo
