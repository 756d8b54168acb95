// qyolo detect --onnx <model> -o <dir> <images or folders...>: draws what the model sees onto
// each image and writes every detection to <dir>/detections.json.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "qyolo/commands.h"
#include "qyolo/detector.h"
#include "qyolo/draw.h"
#include "qyolo/onnx.h"
#include "qyolo/make_detector.h"

namespace qyolo::cli {
namespace {

namespace fs = std::filesystem;

struct DetectOptions {
  std::string model;
  std::string engine;  // --loadEngine instead of --onnx
  std::vector<std::string> inputs;  // images or folders
  std::string output_dir;
  float conf = 0.25f;
  float iou = 0.45f;
  int max_det = 300;
  int image_size = 640;
  std::string anchors;
  bool host_pipeline = false;  // --host-pipeline: a cuda engine's letterbox and NMS on the host
};

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool is_image_file(const fs::path& path) {
  const std::string ext = lower(path.extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// Folders become their .jpg/.jpeg/.png files (not recursing), sorted; anything else is kept as
// given, so a missing file is reported when it is read.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs,
                                       std::vector<std::string>& empty_folders) {
  std::vector<std::string> images;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      images.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(input, ec)) {
      if (entry.is_regular_file(ec) && is_image_file(entry.path())) {
        found.push_back(entry.path().string());
      }
    }
    if (found.empty()) empty_folders.push_back(input);
    std::sort(found.begin(), found.end());
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

// <dir>/<stem>.jpg, or .png for PNG inputs; a stem seen before gets _2, _3, ... so two inputs
// with the same name from different folders do not overwrite each other.
fs::path output_path(const fs::path& dir, const fs::path& input, std::set<std::string>& used) {
  const std::string ext = lower(input.extension().string()) == ".png" ? ".png" : ".jpg";
  std::string name = input.stem().string() + ext;
  for (int n = 2; used.count(name); ++n)
    name = input.stem().string() + "_" + std::to_string(n) + ext;
  used.insert(name);
  return dir / name;
}

// "3 person, 2 chair, 1 tv": most frequent first, then by class id.
std::string class_summary(const std::vector<Detection>& detections,
                          const std::vector<std::string>& names) {
  std::map<int, int> counts;
  for (const auto& d : detections) ++counts[d.class_id];
  std::vector<std::pair<int, int>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text;
  for (const auto& [id, count] : sorted) {
    if (!text.empty()) text += ", ";
    const bool named = id >= 0 && static_cast<size_t>(id) < names.size();
    text += std::to_string(count) + " " + (named ? names[id] : "class " + std::to_string(id));
  }
  return text;
}

// Rounds to `digits` decimals so the JSON shows 156.39, not 156.38999938964844.
double rounded(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

using Json = nlohmann::ordered_json;

Json detection_json(const Detection& d, const std::vector<std::string>& names) {
  const bool named = d.class_id >= 0 && static_cast<size_t>(d.class_id) < names.size();
  return {{"class_id", d.class_id},
          {"class", named ? names[d.class_id] : std::to_string(d.class_id)},
          {"score", rounded(d.score, 5)},
          {"box_xyxy", {rounded(d.x1, 2), rounded(d.y1, 2), rounded(d.x2, 2), rounded(d.y2, 2)}}};
}

// Compact JSON; bytes of a path that are not UTF-8 become U+FFFD instead of throwing.
std::string dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// One image per entry, one detection per line: valid JSON that is also easy to read and grep.
Status write_results(const fs::path& path, const std::vector<Json>& images,
                     const std::vector<std::vector<Json>>& detections) {
  std::ofstream out(path);
  out << "[";
  for (size_t i = 0; i < images.size(); ++i) {
    std::string head = dump(images[i]);
    head.pop_back();  // the closing brace; "detections" goes last
    out << (i ? ",\n" : "\n") << head << ",\"detections\":[";
    for (size_t k = 0; k < detections[i].size(); ++k) {
      out << (k ? ",\n  " : "\n  ") << dump(detections[i][k]);
    }
    out << (detections[i].empty() ? "]}" : "\n]}");
  }
  out << "\n]\n";
  out.close();
  if (!out) return io_error("cannot write ", path.string());
  return Status::ok();
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

int run_detect(const DetectOptions& options) {
  DetectorOptions detector_options;
  detector_options.image_size = options.image_size;
  detector_options.nms.conf_threshold = options.conf;
  detector_options.nms.iou_threshold = options.iou;
  detector_options.nms.max_det = options.max_det;
  detector_options.nms.multi_label = false;  // the best class per box, as detect.py does
  detector_options.host_pipeline = options.host_pipeline;
  if (!options.anchors.empty()) {
    auto anchors = parse_anchors(options.anchors);
    if (!anchors) return report_error("detect", anchors.status());
    detector_options.anchors = *anchors;
  }
  auto detector = make_detector(options.model, options.engine, {}, detector_options);
  if (!detector) return report_error("detect", detector.status());

  std::error_code ec;
  fs::create_directories(options.output_dir, ec);
  if (ec) {
    return report_error("detect",
                        io_error("cannot create ", options.output_dir, ": ", ec.message()));
  }
  // ONNX exports carry no class names qyolo reads; YOLOv5 models here are COCO's 80.
  const std::vector<std::string> names(coco_class_names().begin(), coco_class_names().end());

  std::vector<std::string> empty_folders;
  const std::vector<std::string> images = expand_inputs(options.inputs, empty_folders);
  int failed = 0;
  for (const auto& folder : empty_folders) {
    report_error("detect", not_found(folder, ": no .jpg, .jpeg or .png images in this folder"));
    ++failed;
  }

  std::vector<Json> results;
  std::vector<std::vector<Json>> result_detections;
  std::set<std::string> used_names;
  int64_t total_detections = 0;
  double total_ms = 0, decode_ms = 0;
  for (const auto& path : images) {
    const auto start = std::chrono::steady_clock::now();
    auto image = read_image(path);
    const double image_decode_ms = ms_since(start);
    if (!image) {
      report_error("detect", image.status());
      ++failed;
      continue;
    }
    auto detections = (*detector)->detect(*image);
    if (!detections) {
      report_error("detect", with_context(detections.status(), path));
      ++failed;
      continue;
    }
    // Reading and detecting; drawing and writing are not the model's time.
    const double ms = ms_since(start);
    total_ms += ms;
    decode_ms += image_decode_ms;

    const fs::path out = output_path(options.output_dir, path, used_names);
    Image drawn = *image;
    draw_detections(drawn, *detections, names);
    if (Status status = write_image(drawn, out.string()); !status.is_ok()) {
      report_error("detect", status);
      ++failed;
      continue;
    }
    total_detections += static_cast<int64_t>(detections->size());
    results.push_back({{"image", path},
                       {"width", image->width},
                       {"height", image->height},
                       {"output", out.string()}});
    result_detections.emplace_back();
    for (const auto& d : *detections) result_detections.back().push_back(detection_json(d, names));
    const std::string summary = class_summary(*detections, names);
    std::printf("%s: %zu detection%s%s -> %s, %.0f ms\n", fs::path(path).filename().c_str(),
                detections->size(), detections->size() == 1 ? "" : "s",
                summary.empty() ? "" : (" (" + summary + ")").c_str(), out.c_str(), ms);
    std::fflush(stdout);
  }

  const fs::path json_path = fs::path(options.output_dir) / "detections.json";
  if (Status status = write_results(json_path, results, result_detections); !status.is_ok()) {
    return report_error("detect", status);
  }

  const int done = static_cast<int>(results.size());
  const StageTimes& t = (*detector)->times();
  std::printf("%d image%s, %lld detections", done, done == 1 ? "" : "s",
              static_cast<long long>(total_detections));
  if (failed > 0) std::printf(", %d failed", failed);
  if (t.images > 0) {
    const double n = static_cast<double>(t.images);
    std::printf("; per image %.0f ms (decode %.1f, preprocess %.1f, inference %.1f, nms %.1f)",
                total_ms / n, decode_ms / n, t.preprocess / n, t.inference / n, t.nms / n);
  }
  std::printf("; results in %s\n", json_path.c_str());
  return failed > 0 ? 1 : 0;
}

}  // namespace

void add_detect_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<DetectOptions>();
  CLI::App* cmd =
      app.add_subcommand("detect", "Draw detected boxes onto images and write detections.json");
  cmd->add_option("--onnx", options->model, "ONNX model file");
  cmd->add_option("--loadEngine", options->engine, "Engine file from qyolo build, run on its target");
  cmd->add_flag("--host-pipeline", options->host_pipeline,
                "With a cuda engine: letterbox, decode and NMS on the host, not on the GPU");
  cmd->add_option("-o,--output-dir", options->output_dir, "Folder for drawn images and JSON")
      ->required();
  cmd->add_option("--conf", options->conf, "Confidence threshold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--iou", options->iou, "NMS IoU threshold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-det", options->max_det, "Most detections per image")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--imgsz", options->image_size, "Long side of the resized image")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--anchors", options->anchors,
                  "Anchors for trimmed models: \"10,13,16,30,33,23;30,61,...;116,90,...\"");
  cmd->add_option("inputs", options->inputs, "Images (.jpg, .png) or folders of them")->required();
  cmd->callback([options, &exit_code] { exit_code = run_detect(*options); });
}

}  // namespace qyolo::cli
