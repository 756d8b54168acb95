// qyolo calibrate: post-training calibration on a folder of images. Each image is letterboxed
// as `qyolo val` does it, run through the FP32 model, and every float activation's |x| is
// histogrammed; amax by max, percentile, entropy or MSE goes into a TensorRT cache.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "qyolo/commands.h"
#include "qyolo/detector.h"
#include "qyolo/onnx.h"
#include "qyolo/progress.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"

namespace qyolo::cli {
namespace {

struct CalibrateOptions {
  std::string model;
  std::string images;
  std::string method = "entropy";
  double percentile = 99.99;
  int max_images = 0;
  int image_size = 640;
  int canvas = 0;
  std::string trt_version = "8600";
  std::string output;
};

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The .jpg/.jpeg/.png files under `dir` (sub-folders included), sorted by path.
Expected<std::vector<std::string>> list_images(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return not_found(dir, " is not a folder");
  std::vector<std::string> files;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && has_image_extension(it->path()))
      files.push_back(it->path().string());
  }
  if (ec) return io_error("cannot list ", dir, ": ", ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

// The letterbox canvas: the model's input size when it is fixed, else --canvas or --imgsz.
int run_calibrate(const CalibrateOptions& options) {
  auto method = parse_calibration_method(options.method);
  if (!method) return report_error("calibrate", method.status());
  if (!(options.percentile > 0.0 && options.percentile <= 100.0)) {
    return report_error(
        "calibrate", invalid_argument("--percentile ", options.percentile, " is not in (0, 100]"));
  }
  auto files = list_images(options.images);
  if (!files) return report_error("calibrate", files.status());
  if (files->empty()) {
    return report_error("calibrate",
                        not_found("no images (.jpg, .jpeg, .png) in ", options.images));
  }
  auto graph = load_onnx(options.model);
  if (!graph) return report_error("calibrate", graph.status());
  auto canvas = model_canvas(*graph, options.image_size, options.canvas);
  if (!canvas) return report_error("calibrate", with_context(canvas.status(), options.model));
  const std::string input_name = graph->inputs[0].name;
  const Shape input_shape = {1, 3, *canvas, *canvas};
  auto calibrator = Calibrator::create(*graph, {}, {{input_name, input_shape}});
  if (!calibrator)
    return report_error("calibrate", with_context(calibrator.status(), options.model));

  const auto start = std::chrono::steady_clock::now();
  const int64_t wanted =
      options.max_images > 0
          ? std::min<int64_t>(options.max_images, static_cast<int64_t>(files->size()))
          : static_cast<int64_t>(files->size());
  ProgressBar progress("calibrate", wanted);
  int64_t used = 0, skipped = 0;
  for (const auto& path : *files) {
    if (used >= wanted) break;
    auto image = read_image(path);
    if (!image) {
      // An unreadable image is named and skipped; the next one takes its place.
      ++skipped;
      std::fprintf(stderr, "%swarning: skipping %s\n", isatty(fileno(stderr)) ? "\n" : "",
                   image.status().message().c_str());
      continue;
    }
    Letterbox placement;
    const Image boxed = letterbox(*image, options.image_size, *canvas, &placement);
    Tensor input(DType::kFloat32, input_shape);
    image_to_tensor(boxed, input, 0);
    Status status = (*calibrator)->add_batch({{input_name, std::move(input)}});
    if (!status.is_ok()) return report_error("calibrate", with_context(status, path));
    ++used;
    progress.update(used, skipped ? std::to_string(skipped) + " skipped" : std::string());
  }
  if (used == 0) {
    return report_error("calibrate", not_found("no readable image in ", options.images, " (",
                                               skipped, " files could not be read)"));
  }
  if (used < wanted) progress.update(wanted, std::to_string(skipped) + " skipped");
  const double collect_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  CalibrationOptions calibration;
  calibration.method = *method;
  calibration.percentile = options.percentile;
  const auto amax_start = std::chrono::steady_clock::now();
  const CalibrationCache cache = (*calibrator)->cache(calibration, options.trt_version);
  const double amax_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - amax_start).count();
  Status status = write_calibration_cache(cache, options.output);
  if (!status.is_ok()) return report_error("calibrate", status);

  int64_t zero = 0;
  for (size_t k = 0; k < (*calibrator)->tensors().size(); ++k) {
    if ((*calibrator)->histogram(k).max_abs() == 0.0f) ++zero;
  }
  if (zero > 0) {
    std::fprintf(
        stderr,
        "qyolo calibrate: warning: %lld tensors were 0 on every image; they get a tiny scale\n",
        static_cast<long long>(zero));
  }
  std::printf("calibrated %zu tensors on %lld images (%lld skipped) with %s\n",
              cache.entries.size(), static_cast<long long>(used), static_cast<long long>(skipped),
              options.method.c_str());
  std::printf("time      %.1f s histograms, %.2f s amax\n", collect_s, amax_s);
  std::printf("wrote     %s (TRT-%s-%s)\n", options.output.c_str(), cache.version.c_str(),
              cache.algorithm.c_str());
  return 0;
}

}  // namespace

void add_calibrate_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "Post-training calibration on images -> TensorRT calibration cache");
  cmd->add_option("--onnx", o->model, "FP32 ONNX model")->required();
  cmd->add_option("--images", o->images,
                  "Folder of calibration images (.jpg/.png, sub-folders too)")
      ->required();
  cmd->add_option("--method", o->method, "max, percentile, entropy or mse")->capture_default_str();
  cmd->add_option("--percentile", o->percentile, "Percentile for --method percentile")
      ->capture_default_str();
  cmd->add_option("--max-images", o->max_images, "Calibrate on the first N readable images");
  cmd->add_option("--imgsz", o->image_size, "Long side of the resized image")
      ->capture_default_str();
  cmd->add_option("--canvas", o->canvas, "Letterbox canvas (default: the model's input size)");
  cmd->add_option("--trt-calib-version", o->trt_version, "TensorRT version in the cache header")
      ->capture_default_str();
  cmd->add_option("-o,--output", o->output, "Calibration cache to write")->required();
  cmd->callback([o, &exit_code] { exit_code = run_calibrate(*o); });
}

}  // namespace qyolo::cli
