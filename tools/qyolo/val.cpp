// qyolo val: COCO validation of a detector, as ultralytics' val.py with --save-json does,
// scored by qyolo's own COCOeval (pycocotools' numbers).
#include <cmath>
#include <cstdio>
#include <filesystem>
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

namespace qyolo::cli {
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
  if (!options.anchors.empty()) {
    auto anchors = parse_anchors(options.anchors);
    if (!anchors) return report_error("val", anchors.status());
    detector_options.anchors = *anchors;
  }
  auto detector = make_detector(options.model, options.engine, options.precision, detector_options);
  if (!detector) return report_error("val", detector.status());

  if (options.precision.int8 || !options.engine.empty()) {
    int int8_layers = 0;
    std::string fp16;
    for (const auto& layer : (*detector)->layer_precisions()) {
      if (layer.precision == "int8") {
        ++int8_layers;
      } else if (layer.op == "Conv" || layer.op == "Conv+SiLU") {
        fp16 += "  " + layer.name + " (" + layer.reason + ")\n";
      }
    }
    std::printf("INT8: %d layers int8; convolutions in FP16:\n%s", int8_layers,
                fp16.empty() ? "  none\n" : fp16.c_str());
  }
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

  std::vector<CocoAnnotation> detections;
  std::vector<int64_t> evaluated_ids;
  int64_t failed = 0;
  ProgressBar progress("val", static_cast<int64_t>(todo.size()));
  for (size_t i = 0; i < todo.size(); ++i) {
    const CocoImage& image = *todo[i];
    const auto path = (std::filesystem::path(options.images) / image.file_name).string();
    evaluated_ids.push_back(image.id);
    auto found = (*detector)->detect_file(path);
    if (!found) {
      // A bad image counts as one with no detections; the run goes on.
      ++failed;
      std::fprintf(stderr, "%swarning: %s\n", isatty(fileno(stderr)) ? "\n" : "",
                   found.status().message().c_str());
    } else {
      for (const Detection& d : *found) detections.push_back(to_coco(d, image.id));
    }
    progress.update(static_cast<int64_t>(i + 1),
                    failed ? std::to_string(failed) + " failed" : std::string());
  }

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
  const StageTimes& t = (*detector)->times();
  const double n = static_cast<double>(std::max<int64_t>(t.images, 1));
  std::printf("\nimages %zu (%lld failed), detections %zu\n", todo.size(),
              static_cast<long long>(failed), detections.size());
  std::printf(
      "time per image: decode %.1f ms, preprocess %.1f ms, inference %.1f ms, NMS %.1f ms\n",
      t.decode / n, t.preprocess / n, t.inference / n, t.nms / n);

  if (!options.export_metrics.empty()) {
    nlohmann::json metrics;
    metrics["stats"] = std::vector<double>(result->stats.begin(), result->stats.end());
    metrics["images"] = todo.size();
    metrics["failed_images"] = failed;
    metrics["missing_images"] = missing;
    metrics["detections"] = detections.size();
    metrics["model"] = options.engine.empty() ? options.model : options.engine;
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
  add_precision_flags(cmd, o->precision);
  cmd->callback([o, &exit_code] { exit_code = run_val(*o); });
}

}  // namespace qyolo::cli
