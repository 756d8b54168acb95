// The detector of val and detect: from --onnx (FP32, or INT8 with --int8 --calib) or from
// --loadEngine (an engine file, run on its target through the runtime).
#pragma once

#include <memory>
#include <string>

#include "qyolo/detector.h"
#include "qyolo/onnx.h"
#include "qyolo/precision_flags.h"

namespace qyolo::cli {

inline Expected<std::unique_ptr<Detector>> make_detector(const std::string& model,
                                                         const std::string& engine,
                                                         const PrecisionFlags& precision,
                                                         DetectorOptions options) {
  if (model.empty() == engine.empty())
    return invalid_argument("give either --onnx <model> or --loadEngine <engine>");
  if (!engine.empty()) {
    if (precision.int8 || !precision.calib.empty() || !precision.layer_precisions.empty())
      return invalid_argument(
          "--int8, --calib and --layerPrecisions are fixed when the engine is built "
          "(qyolo build), not with --loadEngine");
    return Detector::create_from_engine(engine, options);
  }
  QYOLO_ASSIGN_OR_RETURN(Graph graph, load_onnx(model));
  QYOLO_RETURN_IF_ERROR(resolve_precision(precision, graph, options.scales, options.fp16_layers));
  options.int8 = precision.int8;
  auto detector = Detector::create(graph, options);
  if (!detector) return with_context(detector.status(), model);
  return detector;
}

}  // namespace qyolo::cli
