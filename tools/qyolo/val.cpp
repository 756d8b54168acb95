// qyolo val: COCO validation of a detector, as ultralytics' val.py with --save-json does,
// scored by qyolo's own COCOeval (pycocotools' numbers).
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <thread>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "qyolo/coco.h"
#include "qyolo/commands.h"
#include "qyolo/detector.h"
#include "qyolo/onnx.h"
#include "qyolo/precision_flags.h"
#include "qyolo/progress.h"
#include "qyolo/make_detector.h"
#include "qyolo/runtime.h"

namespace qyolo::cli {

Expected<std::vector<int>> parse_devices(const std::string& text, EngineTarget target) {
  if (text.empty()) return std::vector<int>{0};
  std::vector<int> devices;
  if (text == "all") {
    const int count = runtime::device_count(target);
    if (count == 0) return unsupported("--devices all: no device of target ", target_name(target));
    for (int i = 0; i < count; ++i) devices.push_back(i);
    return devices;
  }
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    char* end = nullptr;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value < 0 || value > 1023)
      return invalid_argument("--devices '", text, "': expected all or device indices like 0,1");
    if (target == EngineTarget::kCpu && value != 0)
      return invalid_argument("--devices '", text, "': the cpu target has one device, 0 (repeat ",
                              "it for more instances)");
    devices.push_back(int(value));
    at = comma + 1;
  }
  return devices;
}

Expected<std::vector<int>> parse_devices(const std::string& text, const std::string& engine) {
  if (text.empty()) return std::vector<int>{0};
  if (engine.empty()) return invalid_argument("--devices needs --loadEngine");
  QYOLO_ASSIGN_OR_RETURN(Engine e, load_engine(engine));
  return parse_devices(text, e.target);
}

namespace {

struct ValOptions {
  std::string model;
  std::string engine;  // --loadEngine instead of --onnx
  std::string images;
  std::string annotations;
  int image_size = 640;
  int canvas = 0;
  float conf = 0.001f;
  float iou = 0.6f;
  int max_det = 300;
  int max_images = 0;
  std::string anchors;
  std::string save_json;
  std::string export_metrics;
  std::string devices;  // --devices all|0,1,...: one engine instance per entry
  bool host_pipeline = false;  // --host-pipeline: a cuda engine's letterbox and NMS on the host
  PrecisionFlags precision;
};

// Python's round(value, digits): the correctly rounded decimal, read back as a double.
double round_decimal(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return std::strtod(text, nullptr);
}

// ultralytics' save_one_json: xyxy -> xywh (float32 arithmetic) -> top-left, rounded.
CocoAnnotation to_coco(const Detection& d, int64_t image_id) {
  CocoAnnotation a;
  a.image_id = image_id;
  a.category_id = coco80_to_91(d.class_id);
  const float cx = (d.x1 + d.x2) / 2, cy = (d.y1 + d.y2) / 2;
  const float w = d.x2 - d.x1, h = d.y2 - d.y1;
  a.bbox = {round_decimal(cx - w / 2, 3), round_decimal(cy - h / 2, 3), round_decimal(w, 3),
            round_decimal(h, 3)};
  a.area = a.bbox[2] * a.bbox[3];
  a.score = round_decimal(d.score, 5);
  return a;
}

int run_val(const ValOptions& options) {
  auto ground_truth = load_coco_annotations(options.annotations);
  if (!ground_truth) return report_error("val", ground_truth.status());
  DetectorOptions detector_options;
  detector_options.image_size = options.image_size;
  detector_options.canvas = options.canvas;
  detector_options.nms.conf_threshold = options.conf;
  detector_options.nms.iou_threshold = options.iou;
  detector_options.nms.max_det = options.max_det;
  detector_options.host_pipeline = options.host_pipeline;
  if (!options.anchors.empty()) {
    auto anchors = parse_anchors(options.anchors);
    if (!anchors) return report_error("val", anchors.status());
    detector_options.anchors = *anchors;
  }
  auto parsed_devices = parse_devices(options.devices, options.engine);
  if (!parsed_devices) return report_error("val", parsed_devices.status());
  const std::vector<int> devices = *parsed_devices;
  // One detector per device entry; the first one also answers the questions below.
  std::vector<std::unique_ptr<Detector>> detectors;
  for (int device : devices) {
    detector_options.device_index = device;
    auto made = make_detector(options.model, options.engine, options.precision, detector_options);
    if (!made) return report_error("val", made.status());
    detectors.push_back(std::move(*made));
  }

  if (options.precision.int8 || !options.engine.empty()) {
    int int8_layers = 0;
    std::string fp16;
    for (const auto& layer : detectors.front()->layer_precisions()) {
      if (layer.precision == "int8") {
        ++int8_layers;
      } else if (layer.op == "Conv" || layer.op == "Conv+SiLU") {
        fp16 += "  " + layer.name + " (" + layer.reason + ")\n";
      }
    }
    std::printf("INT8: %d layers int8; convolutions in FP16:\n%s", int8_layers,
                fp16.empty() ? "  none\n" : fp16.c_str());
  }
  if (!options.engine.empty())
    std::printf("pipeline: letterbox, decode and NMS on the %s\n",
                detectors.front()->pipeline() == "gpu" ? "GPU, with the network" : "host");
  // The images of the annotation file that are in the folder, in annotation order.
  std::vector<const CocoImage*> todo;
  int64_t missing = 0;
  for (const CocoImage& image : ground_truth->images) {
    if (std::filesystem::exists(std::filesystem::path(options.images) / image.file_name)) {
      todo.push_back(&image);
    } else {
      ++missing;
    }
  }
  if (todo.empty()) {
    return report_error("val", not_found("none of the ", ground_truth->images.size(), " images of ",
                                         options.annotations, " is in ", options.images));
  }
  if (missing > 0) {
    std::fprintf(stderr,
                 "warning: %lld of %zu annotated images are not in %s; evaluating the %zu found\n",
                 static_cast<long long>(missing), ground_truth->images.size(),
                 options.images.c_str(), todo.size());
  }
  if (options.max_images > 0 && static_cast<int>(todo.size()) > options.max_images) {
    todo.resize(options.max_images);
  }

  // Images sharded round robin over the detectors (one thread each); results merged in
  // annotation order, so any number of devices gives the single-device results.
  std::vector<CocoAnnotation> detections;
  std::vector<int64_t> evaluated_ids;
  for (const CocoImage* image : todo) evaluated_ids.push_back(image->id);
  std::vector<std::vector<Detection>> found_per_image(todo.size());
  std::vector<std::string> errors(todo.size());
  std::vector<double> worker_seconds(detectors.size(), 0.0);
  std::vector<int64_t> worker_images(detectors.size(), 0);
  // Detector k's share of the images; on_image(i) after each one.
  auto work = [&](size_t k, const std::function<void(size_t)>& on_image) {
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = k; i < todo.size(); i += detectors.size()) {
      const auto path = (std::filesystem::path(options.images) / todo[i]->file_name).string();
      auto found = detectors[k]->detect_file(path);
      // A bad image counts as one with no detections; the run goes on.
      if (found) found_per_image[i] = std::move(*found);
      else errors[i] = found.status().message();
      ++worker_images[k];
      on_image(i);
    }
    worker_seconds[k] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const auto wall_start = std::chrono::steady_clock::now();
  ProgressBar progress("val", static_cast<int64_t>(todo.size()));
  int64_t failed = 0;
  if (detectors.size() == 1) {
    // One detector: on this thread, warnings as they happen.
    work(0, [&](size_t i) {
      if (!errors[i].empty()) {
        ++failed;
        std::fprintf(stderr, "%swarning: %s\n", isatty(fileno(stderr)) ? "\n" : "",
                     errors[i].c_str());
      }
      progress.update(static_cast<int64_t>(i + 1),
                      failed ? std::to_string(failed) + " failed" : std::string());
    });
  } else {
    std::atomic<int64_t> done{0};
    std::vector<std::thread> workers;
    for (size_t k = 0; k < detectors.size(); ++k)
      workers.emplace_back(work, k, [&](size_t) { ++done; });
    while (done.load() < static_cast<int64_t>(todo.size())) {
      progress.update(done.load(), std::to_string(detectors.size()) + " instances");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (std::thread& t : workers) t.join();
    progress.update(static_cast<int64_t>(todo.size()));
    for (size_t i = 0; i < todo.size(); ++i) {
      if (errors[i].empty()) continue;
      ++failed;
      std::fprintf(stderr, "warning: %s\n", errors[i].c_str());
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  for (size_t i = 0; i < todo.size(); ++i)
    for (const Detection& d : found_per_image[i]) detections.push_back(to_coco(d, todo[i]->id));

  if (!options.save_json.empty()) {
    Status status = write_coco_results(options.save_json, detections);
    if (!status.is_ok()) return report_error("val", status);
  }
  CocoEvalParams params;
  params.image_ids = evaluated_ids;
  auto result = evaluate_coco_bbox(*ground_truth, detections, params);
  if (!result) return report_error("val", result.status());

  std::printf("%s", coco_summary_text(*result).c_str());
  // Per-class table, as ultralytics prints it (instances = non-crowd ground truth).
  std::map<int64_t, std::string> names;
  for (const auto& c : ground_truth->categories) names[c.id] = c.name;
  std::printf("\n%-16s %9s %8s %8s\n", "class", "instances", "AP50", "AP50-95");
  for (const CocoCategoryAp& c : coco_per_category_ap(*result)) {
    if (c.num_gt == 0) continue;
    std::printf("%-16s %9lld %8.3f %8.3f\n", names[c.category_id].c_str(),
                static_cast<long long>(c.num_gt), c.ap50, c.ap);
  }
  StageTimes t;
  for (const auto& d : detectors) {
    const StageTimes& s = d->times();
    t.decode += s.decode, t.preprocess += s.preprocess, t.inference += s.inference;
    t.nms += s.nms, t.images += s.images;
  }
  const double n = static_cast<double>(std::max<int64_t>(t.images, 1));
  std::printf("\nimages %zu (%lld failed), detections %zu\n", todo.size(),
              static_cast<long long>(failed), detections.size());
  std::printf(
      "time per image: decode %.1f ms, preprocess %.1f ms, inference %.1f ms, NMS %.1f ms\n",
      t.decode / n, t.preprocess / n, t.inference / n, t.nms / n);
  if (detectors.size() > 1) {
    for (size_t k = 0; k < detectors.size(); ++k)
      std::printf("instance %zu (device %d): %lld images, %.1f images/s\n", k, devices[k],
                  static_cast<long long>(worker_images[k]),
                  worker_images[k] / std::max(worker_seconds[k], 1e-9));
    std::printf("all %zu instances: %.1f images/s\n", detectors.size(),
                double(todo.size()) / std::max(wall, 1e-9));
  }

  if (!options.export_metrics.empty()) {
    nlohmann::json metrics;
    metrics["stats"] = std::vector<double>(result->stats.begin(), result->stats.end());
    metrics["images"] = todo.size();
    metrics["failed_images"] = failed;
    metrics["missing_images"] = missing;
    metrics["detections"] = detections.size();
    metrics["model"] = options.engine.empty() ? options.model : options.engine;
    metrics["devices"] = devices;
    metrics["pipeline"] = detectors.front()->pipeline();
    metrics["images_per_s"] = double(todo.size()) / std::max(wall, 1e-9);
    metrics["time_per_image_ms"] = {{"decode", t.decode / n},
                                    {"preprocess", t.preprocess / n},
                                    {"inference", t.inference / n},
                                    {"nms", t.nms / n}};
    nlohmann::json per_class = nlohmann::json::array();
    for (const CocoCategoryAp& c : coco_per_category_ap(*result)) {
      per_class.push_back({{"category_id", c.category_id},
                           {"name", names[c.category_id]},
                           {"instances", c.num_gt},
                           {"ap50", c.ap50},
                           {"ap", c.ap}});
    }
    metrics["per_class"] = per_class;
    std::ofstream out(options.export_metrics);
    out << metrics.dump(2) << "\n";
    if (!out) return report_error("val", io_error("cannot write ", options.export_metrics));
  }
  return 0;
}

}  // namespace

void add_val_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ValOptions>();
  CLI::App* cmd = app.add_subcommand("val", "COCO validation (mAP) of a detector");
  cmd->add_option("--onnx", o->model, "ONNX model (full export or trimmed at the heads)");
  cmd->add_option("--loadEngine", o->engine, "Engine file from qyolo build, run on its target");
  cmd->add_option("--images", o->images, "Folder of images")->required();
  cmd->add_option("--annotations", o->annotations, "COCO instances json")->required();
  cmd->add_option("--imgsz", o->image_size, "Long side of the resized image")
      ->capture_default_str();
  cmd->add_option(
      "--canvas", o->canvas,
      "Letterbox canvas (default: the model's input size; 672 for NVIDIA's DLA setting)");
  cmd->add_option("--conf", o->conf, "Confidence threshold")->capture_default_str();
  cmd->add_option("--iou", o->iou, "NMS IoU threshold")->capture_default_str();
  cmd->add_option("--max-det", o->max_det, "Detections kept per image")->capture_default_str();
  cmd->add_option("--max-images", o->max_images, "Validate only the first N images");
  cmd->add_option("--anchors", o->anchors,
                  "Anchors of a trimmed model: w,h x3 per level, levels split by ';'");
  cmd->add_option("--save-json", o->save_json, "Write the detections as COCO results json");
  cmd->add_option("--export-metrics", o->export_metrics, "Write the 12 stats and more as json");
  cmd->add_option("--devices", o->devices,
                  "With --loadEngine: all, or device indices (0,1; repeats = instances on one "
                  "device); images are sharded across one engine instance per entry");
  cmd->add_flag("--host-pipeline", o->host_pipeline,
                "With a cuda engine: letterbox, decode and NMS on the host, not on the GPU");
  add_precision_flags(cmd, o->precision);
  cmd->callback([o, &exit_code] { exit_code = run_val(*o); });
}

}  // namespace qyolo::cli
