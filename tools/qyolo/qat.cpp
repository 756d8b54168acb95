// qyolo qat: quantization-aware training. Inserts Q/DQ in NVIDIA's Option 1 or Option 2
// placement, calibrates on the images, fine-tunes by distillation from the FP32 model or, with
// --annotations, with YOLOv5's detection loss, and exports a QAT ONNX for `qyolo translate`. The
// output folder keeps calibrated.onnx, checkpoint.pt (a rerun resumes from it), log.csv, loss.png
// and qat.onnx.
#include "qyolo/qat.h"

#include <cstdio>
#include <filesystem>

#include "qyolo/commands.h"
#include "qyolo/int8.h"
#include "qyolo/onnx.h"
#include "qyolo/progress.h"

namespace qyolo::cli {
namespace {

struct QatOptions {
  std::string model;
  std::string images;
  std::string annotations;
  std::string placement = "opt1";
  std::string calib_method = "entropy";
  double percentile = 99.99;
  int epochs = 1;
  int batch = 4;
  double lr = 1e-4;
  double distill_weight = 0.0;
  bool distill_weight_given = false;  // else 1 without --annotations, 0 with
  std::string distill_on = distillation_target_name(FineTuneOptions().distill_on);
  std::string student = FineTuneOptions().engine_rounding ? "engine" : "qdq";
  std::string layer_precisions;
  int image_size = 640;
  int train_size = 0;
  std::string device = "cpu";
  uint64_t seed = 0;
  int max_images = 0;
  bool trim = false;
  bool no_resume = false;
  std::string export_path;
  std::string output_dir;
};

int run_qat(const QatOptions& o) {
  const char* cmd = "qat";
  QdqPlacement placement;
  if (o.placement == "opt1") {
    placement = QdqPlacement::kTensorRT;
  } else if (o.placement == "opt2") {
    placement = QdqPlacement::kAllNodes;
  } else {
    return report_error(cmd, invalid_argument("--placement '", o.placement,
                                              "': expected opt1 (TensorRT's) or opt2 (all nodes)"));
  }
  auto method = parse_calibration_method(o.calib_method);
  if (!method) return report_error(cmd, method.status());
  auto distill_on = parse_distillation_target(o.distill_on);
  if (!distill_on) return report_error(cmd, distill_on.status());
  if (o.student != "engine" && o.student != "qdq") {
    return report_error(cmd, invalid_argument("--student '", o.student,
                                              "': expected engine (rounds where the INT8 engine "
                                              "does) or qdq (at every Q/DQ)"));
  }
  std::set<std::string> fp16_layers;
  if (!o.layer_precisions.empty()) {
    auto parsed = parse_layer_precisions(o.layer_precisions);
    if (!parsed) return report_error(cmd, parsed.status());
    fp16_layers = std::move(*parsed);
  }
  if (o.distill_weight_given && !(o.distill_weight >= 0.0)) {
    return report_error(cmd,
                        invalid_argument("--distill-weight ", o.distill_weight, " is negative"));
  }
  if (o.annotations.empty() && o.distill_weight_given && o.distill_weight == 0.0) {
    return report_error(cmd, invalid_argument("--distill-weight 0 without --annotations leaves "
                                              "nothing to train on"));
  }
  if (o.device == "cuda" && !qat_cuda_available()) {
    return report_error(cmd, unsupported("--device cuda: this LibTorch has no CUDA (or sees no "
                                         "GPU); see docs/qat.md for the CUDA build"));
  }
  auto files = list_training_images(o.images);
  if (!files) return report_error(cmd, files.status());
  std::vector<std::vector<TrainingBox>> labels;
  if (!o.annotations.empty()) {
    auto loaded = load_training_labels(o.annotations, *files, o.images);
    if (!loaded) return report_error(cmd, loaded.status());
    labels = std::move(*loaded);
  }
  if (o.max_images > 0 && files->size() > static_cast<size_t>(o.max_images)) {
    files->resize(o.max_images);
    if (!labels.empty()) labels.resize(o.max_images);
  }
  if (!labels.empty()) {
    size_t boxes = 0, labelled = 0;
    for (const auto& image : labels) boxes += image.size(), labelled += !image.empty();
    const double weight = o.distill_weight_given ? o.distill_weight : 0.0;
    std::printf("labels    %zu boxes on %zu of %zu images; loss: detection%s\n", boxes, labelled,
                files->size(),
                weight > 0.0 ? str_cat(" + ", weight, " x distillation").c_str() : "");
  }
  auto fp32 = load_onnx(o.model);
  if (!fp32) return report_error(cmd, fp32.status());
  // Fail before calibrating when the model has an op the trainer lacks.
  {
    auto probe = trim_at_heads(*fp32);
    if (!probe) return report_error(cmd, with_context(probe.status(), o.model));
    auto model = QatModel::create(*probe, "cpu");
    if (!model) return report_error(cmd, with_context(model.status(), o.model));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.output_dir, ec);
  if (ec) return report_error(cmd, io_error("cannot create ", o.output_dir, ": ", ec.message()));
  const std::filesystem::path dir(o.output_dir);

  CalibrationOptions calibration;
  calibration.method = *method;
  calibration.percentile = o.percentile;
  ProgressBar calib_bar("calibrate", static_cast<int64_t>(files->size()));
  auto calibrated = calibrate_qat(*fp32, placement, *files, o.image_size, calibration,
                                  [&](int64_t done) { calib_bar.update(done); });
  if (!calibrated) return report_error(cmd, with_context(calibrated.status(), o.model));
  for (const auto& message : calibrated->skipped)
    std::fprintf(stderr, "qyolo qat: warning: skipped %s\n", message.c_str());
  Status status = save_onnx(calibrated->graph, (dir / "calibrated.onnx").string());
  if (!status.is_ok()) return report_error(cmd, status);
  std::printf("calibrated %zu activations on %lld images (%s, %s)\n", calibrated->amax.size(),
              static_cast<long long>(calibrated->images), o.placement.c_str(),
              o.calib_method.c_str());

  if (o.epochs > 0 && o.annotations.empty())
    std::printf("loss      distillation on the heads' %s\n", o.distill_on.c_str());
  FineTuneOptions tune;
  tune.epochs = o.epochs;
  tune.batch = o.batch;
  tune.lr = o.lr;
  tune.image_size = o.train_size > 0 ? o.train_size : o.image_size;
  tune.seed = o.seed;
  tune.labels = std::move(labels);
  tune.distill_weight = o.distill_weight_given ? o.distill_weight : -1.0;
  tune.distill_on = *distill_on;
  tune.engine_rounding = o.student == "engine";
  tune.fp16_layers = fp16_layers;
  tune.device = o.device;
  tune.output_dir = o.output_dir;
  tune.resume = !o.no_resume;
  if (const char* nan_step = std::getenv("QYOLO_QAT_INJECT_NAN_STEP"))
    tune.inject_nan_at_step = std::atoll(nan_step);
  std::unique_ptr<ProgressBar> bar;
  int bar_epoch = 0;
  auto tuned = fine_tune(*fp32, calibrated->graph, *files, tune, [&](const FineTuneProgress& p) {
    if (p.epoch != bar_epoch) {
      bar = std::make_unique<ProgressBar>(str_cat("epoch ", p.epoch, "/", p.epochs), p.steps);
      bar_epoch = p.epoch;
    }
    char note[64];
    std::snprintf(note, sizeof note, "loss %.5f %.2f img/s", p.loss, p.images_per_second);
    bar->update(p.step, note);
  });
  if (!tuned) return report_error(cmd, tuned.status());
  if (tuned->resumed_from_epoch > 0) {
    std::printf("resumed   from %s at epoch %d\n", (dir / "checkpoint.pt").c_str(),
                tuned->resumed_from_epoch);
  }
  for (const auto& e : tuned->log) {
    std::printf("epoch %3d loss %.6f lr %.3g %.2f img/s\n", e.epoch, e.loss, e.lr,
                e.images_per_second);
  }
  if (o.epochs > tuned->resumed_from_epoch)
    std::printf("time      %.1f s fine-tuning\n", tuned->seconds);

  Expected<Graph> exported = o.trim ? trim_at_heads(tuned->graph) : Expected<Graph>(tuned->graph);
  if (exported) exported = with_input_size(*exported, o.image_size);
  if (!exported) return report_error(cmd, exported.status());
  const std::string path = o.export_path.empty() ? (dir / "qat.onnx").string() : o.export_path;
  status = save_onnx(*exported, path);
  if (!status.is_ok()) return report_error(cmd, status);
  std::printf("wrote     %s (%s)\n", path.c_str(), o.trim ? "trimmed at the heads" : "full");
  return 0;
}

}  // namespace

void add_qat_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<QatOptions>();
  CLI::App* cmd = app.add_subcommand(
      "qat",
      "Quantization-aware training: Q/DQ, calibration, fine-tuning (distillation or, with "
      "--annotations, the YOLOv5 detection loss), QAT ONNX export");
  cmd->add_option("--onnx", o->model, "FP32 ONNX model")->required();
  cmd->add_option("--images", o->images, "Folder of training/calibration images")->required();
  cmd->add_option("--annotations", o->annotations,
                  "COCO instances JSON of the --images: fine-tune with YOLOv5's detection loss");
  CLI::Option* distill_weight =
      cmd->add_option("--distill-weight", o->distill_weight,
                      "Weight of the distillation loss (default 1; 0 with --annotations)");
  cmd->add_option("--distill-on", o->distill_on,
                  "What distillation compares on the heads: logits (raw outputs), sigmoid (after "
                  "Detect's sigmoid) or objectness (sigmoid, anchors weighted by objectness)")
      ->capture_default_str();
  cmd->add_option("--student", o->student,
                  "Where the fine-tuned student rounds: engine (as the INT8 engine will: not "
                  "inside a Conv+SiLU, not in FP16 convs) or qdq (at every Q/DQ of the export)")
      ->capture_default_str();
  cmd->add_option("--layerPrecisions", o->layer_precisions,
                  "Layers the engine will run FP16 (name:fp16,...): the engine student keeps "
                  "them in float");
  cmd->add_option("--placement", o->placement, "opt1 (TensorRT's) or opt2 (all nodes)")
      ->capture_default_str();
  cmd->add_option("--calib-method", o->calib_method, "max, percentile, entropy or mse")
      ->capture_default_str();
  cmd->add_option("--percentile", o->percentile, "Percentile for --calib-method percentile")
      ->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "Fine-tuning epochs (0: calibration only)")
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "Images per step")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Initial learning rate (cosine decay to 1%)")
      ->capture_default_str();
  cmd->add_option("--imgsz", o->image_size, "Training and export input size")
      ->capture_default_str();
  cmd->add_option("--train-imgsz", o->train_size,
                  "Fine-tuning input size (default: --imgsz; calibration and export use --imgsz)");
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed for order, augmentation and torch")
      ->capture_default_str();
  cmd->add_option("--max-images", o->max_images, "Use the first N images");
  cmd->add_flag("--trim", o->trim, "Export ends at the three head convolutions");
  cmd->add_flag("--no-resume", o->no_resume, "Ignore an existing checkpoint in -o");
  cmd->add_option("--export", o->export_path, "QAT ONNX to write (default <dir>/qat.onnx)");
  cmd->add_option("-o,--output-dir", o->output_dir, "Folder for checkpoints, logs and the model")
      ->required();
  cmd->callback([o, distill_weight, &exit_code] {
    o->distill_weight_given = distill_weight->count() > 0;
    exit_code = run_qat(*o);
  });
}

}  // namespace qyolo::cli
