#include "qyolo/detector.h"

#include <chrono>

namespace qyolo {
namespace {

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

Expected<int> model_canvas(const Graph& model, int image_size, int requested) {
  if (model.inputs.size() != 1) {
    return invalid_argument("a detector model has one input, this one has ", model.inputs.size());
  }
  const ValueInfo& input = model.inputs[0];
  if (!input.has_shape || input.shape.size() != 4 || input.shape[1] != 3) {
    return invalid_argument("model input '", input.name, "' must be N x 3 x H x W, got ",
                            shape_str(input.shape));
  }
  int canvas = requested > 0 ? requested : image_size;
  if (input.shape[2] > 0 && input.shape[3] > 0) {
    if (input.shape[2] != input.shape[3]) {
      return unsupported("model input '", input.name, "' is not square (", shape_str(input.shape),
                         ")");
    }
    if (requested > 0 && requested != input.shape[2]) {
      return invalid_argument("the model's input is ", input.shape[2], " pixels, not ", requested);
    }
    canvas = static_cast<int>(input.shape[2]);
  }
  if (image_size > canvas) {
    return invalid_argument("--imgsz ", image_size, " does not fit the model's ", canvas,
                            "-pixel input");
  }
  return canvas;
}

Expected<std::unique_ptr<Detector>> Detector::create(const Graph& model, DetectorOptions options) {
  QYOLO_ASSIGN_OR_RETURN(const int canvas, model_canvas(model, options.image_size, options.canvas));
  const ValueInfo& input = model.inputs[0];
  std::unique_ptr<Detector> detector(new Detector());
  if (model.outputs.size() == 3) {
    detector->trimmed_ = true;
  } else if (model.outputs.size() != 1) {
    return invalid_argument("expected one output (N x rows x 85) or three head outputs, got ",
                            model.outputs.size());
  }
  const Shape input_shape = {1, 3, canvas, canvas};
  if (options.int8) {
    Int8Options int8;
    int8.scales = options.scales;
    int8.fp16_layers = options.fp16_layers;
    int8.input_shapes[input.name] = input_shape;
    QYOLO_ASSIGN_OR_RETURN(detector->int8_, Int8Executor::create(model, int8));
  } else {
    ExecutorOptions exec;
    exec.input_shapes[input.name] = input_shape;
    QYOLO_ASSIGN_OR_RETURN(detector->executor_, CpuExecutor::create(model, exec));
  }
  if (!detector->trimmed_) {
    const ValueInfo& out =
        detector->int8_ ? detector->int8_->outputs()[0] : detector->executor_->outputs()[0];
    if (out.shape.size() != 3 || out.shape[2] < 6) {
      return invalid_argument("output '", out.name, "' is ", shape_str(out.shape),
                              ", expected N x rows x (5 + classes)");
    }
  }
  detector->options_ = options;
  detector->input_name_ = input.name;
  detector->canvas_ = canvas;
  return detector;
}

Expected<std::vector<Detection>> Detector::detect_file(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  auto image = read_image(path);
  times_.decode += elapsed_ms(start);
  if (!image) return image.status();
  return detect(*image);
}

Expected<std::vector<Detection>> Detector::detect(const Image& image) {
  if (engine_) {
    std::vector<Detection> detections;
    QYOLO_ASSIGN_OR_RETURN(const bool done, detect_on_device(image, &detections));
    if (done) return detections;
  }
  auto start = std::chrono::steady_clock::now();
  Letterbox placement;
  const Image boxed = letterbox(image, options_.image_size, canvas_, &placement);
  Tensor input(DType::kFloat32, {1, 3, canvas_, canvas_});
  image_to_tensor(boxed, input, 0);
  times_.preprocess += elapsed_ms(start);

  start = std::chrono::steady_clock::now();
  std::map<std::string, Tensor> inputs;
  inputs.emplace(input_name_, std::move(input));
  QYOLO_ASSIGN_OR_RETURN(auto outputs, run(std::move(inputs)));
  times_.inference += elapsed_ms(start);

  start = std::chrono::steady_clock::now();
  Tensor decoded;
  if (trimmed_) {
    std::vector<const Tensor*> heads;
    for (const auto& [name, t] : outputs) heads.push_back(&t);
    QYOLO_ASSIGN_OR_RETURN(decoded, decode_heads(heads, options_.anchors));
  } else {
    decoded = std::move(outputs.begin()->second);
  }
  const Shape& s = decoded.shape();
  std::vector<Detection> detections =
      non_max_suppression(decoded.data<float>(), s[1], s[2], options_.nms);
  scale_boxes(placement, detections);
  times_.nms += elapsed_ms(start);
  ++times_.images;
  return detections;
}

Expected<std::map<std::string, Tensor>> Detector::run(std::map<std::string, Tensor> inputs) {
  if (engine_) return run_engine(inputs);
  return int8_ ? int8_->run(inputs) : executor_->run(inputs);
}

std::vector<LayerPrecision> Detector::layer_precisions() const {
  if (engine_) return engine_layer_precisions();
  return int8_ ? int8_->layers() : std::vector<LayerPrecision>{};
}

}  // namespace qyolo
