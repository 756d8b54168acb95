// qyolo qat: quantization-aware training. Inserts Q/DQ in NVIDIA's Option 1 or Option 2
// placement, calibrates on the images, fine-tunes by distillation from the FP32 model or, with
// --annotations, with YOLOv5's detection loss, and exports a QAT ONNX for `qyolo translate`. The
// output folder keeps calibrated.onnx, checkpoint.pt (a rerun resumes from it), log.csv, loss.png
// and qat.onnx.
#include "qyolo/qat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

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
  int nproc = 1;
  bool nproc_given = false;
  double dist_timeout = 300.0;
};

// Set in the processes `--nproc` starts, so that they run as ranks rather than launch again.
constexpr const char* kLaunchedVariable = "QYOLO_QAT_LAUNCHED";

// A TCP port on 127.0.0.1 that nothing listens on now (rank 0 binds it shortly after).
Expected<int> free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return io_error("cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) return io_error("cannot find a free port on 127.0.0.1");
  return static_cast<int>(ntohs(address.sin_port));
}

// `qyolo qat --nproc N`: this same command line run N times as ranks 0..N-1 of one local
// group (torchrun's variables, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT); waits for all
// and, when one fails, stops the others and names it.
int launch_ranks(int nproc) {
  const char* cmd = "qat";
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string arg; std::getline(cmdline, arg, '\0');) args.push_back(arg);
  if (args.empty()) return report_error(cmd, io_error("cannot read /proc/self/cmdline"));
  auto port = free_local_port();
  if (!port) return report_error(cmd, port.status());
  // As torchrun: the ranks share the cores rather than each spinning up one thread per core.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1u, cores / nproc));
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      return report_error(cmd, io_error("cannot start rank ", rank, ": fork failed"));
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(*port).c_str(), 1);
      ::setenv(kLaunchedVariable, "1", 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "qyolo qat: error: rank %d: cannot run /proc/self/exe\n", rank);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int failed_rank = -1, failed_status = 0, running = nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    const auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && failed_rank < 0) {
      failed_rank = static_cast<int>(it - pids.begin());
      failed_status = status;
      // The others would wait for it until the timeout.
      for (size_t r = 0; r < pids.size(); ++r)
        if (pids[r] != pid) ::kill(pids[r], SIGTERM);
    }
    *it = -1;
  }
  if (failed_rank < 0) return 0;
  const std::string how = WIFEXITED(failed_status)
                              ? str_cat("exited with code ", WEXITSTATUS(failed_status))
                              : str_cat("was killed by signal ", WTERMSIG(failed_status));
  return report_error(cmd, internal_error("rank ", failed_rank, " of ", nproc, " ", how,
                                          nproc > 1 ? "; the other ranks were stopped" : ""));
}

int run_qat(const QatOptions& o) {
  const char* cmd = "qat";
  auto env = distributed_env([](const char* name) { return std::getenv(name); });
  if (!env) return report_error(cmd, env.status());
  const bool launched = std::getenv(kLaunchedVariable) != nullptr;
  if (o.nproc_given && !launched) {
    if (o.nproc < 1) {
      return report_error(cmd,
                          invalid_argument("--nproc ", o.nproc, ": expected 1 or more processes"));
    }
    if (std::getenv("RANK") || std::getenv("WORLD_SIZE")) {
      return report_error(cmd, invalid_argument("--nproc ", o.nproc,
                                                " with RANK/WORLD_SIZE set: a launcher such as "
                                                "torchrun already started the ranks; give one"));
    }
    if (o.nproc > 1) {
      if (!qat_distributed_available()) {
        return report_error(cmd, ProcessGroup::create({0, o.nproc}).status());
      }
      return launch_ranks(o.nproc);
    }
  }
  if (!(o.dist_timeout > 0.0)) {
    return report_error(cmd, invalid_argument("--dist-timeout ", o.dist_timeout,
                                              " is not a positive number of seconds"));
  }
  // One process (rank 0 of 1), or a rank of a data-parallel group: rank 0 alone calibrates,
  // prints, and writes the output folder.
  std::unique_ptr<ProcessGroup> group;
  if (env->world_size > 1) {
    auto created = ProcessGroup::create(*env, o.device, o.dist_timeout);
    if (!created) return report_error(cmd, created.status());
    group = std::move(*created);
  }
  const int rank = env->rank;
  const bool lead = rank == 0;
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
  if (!labels.empty() && lead) {
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
  Expected<QatCalibration> calibrated = QatCalibration();
  if (lead) {
    ProgressBar calib_bar("calibrate", static_cast<int64_t>(files->size()));
    calibrated = calibrate_qat(*fp32, placement, *files, o.image_size, calibration,
                               [&](int64_t done) { calib_bar.update(done); });
  }
  Status status;
  if (group) {
    // Rank 0 calibrates once; the others get its amax (first value: whether it succeeded).
    auto tensors = qat_calibrated_tensors(*fp32, placement);
    if (!tensors) return report_error(cmd, with_context(tensors.status(), o.model));
    std::vector<float> amax(tensors->size() + 1, 0.0f);
    if (lead && calibrated) {
      amax[0] = 1.0f;
      for (size_t k = 0; k < tensors->size(); ++k) amax[k + 1] = calibrated->amax.at((*tensors)[k]);
    }
    status = group->broadcast(amax);
    if (!status.is_ok()) return report_error(cmd, status);
    if (!lead) {
      if (amax[0] != 1.0f)
        return report_error(cmd, internal_error("rank ", rank, ": rank 0 failed to calibrate"));
      for (size_t k = 0; k < tensors->size(); ++k) calibrated->amax[(*tensors)[k]] = amax[k + 1];
      auto graph = qat_graph_from_amax(*fp32, placement, calibrated->amax);
      if (!graph) return report_error(cmd, with_context(graph.status(), o.model));
      calibrated->graph = std::move(*graph);
    }
  }
  if (!calibrated) return report_error(cmd, with_context(calibrated.status(), o.model));
  if (lead) {
    for (const auto& message : calibrated->skipped)
      std::fprintf(stderr, "qyolo qat: warning: skipped %s\n", message.c_str());
    status = save_onnx(calibrated->graph, (dir / "calibrated.onnx").string());
    if (!status.is_ok()) return report_error(cmd, status);
    std::printf("calibrated %zu activations on %lld images (%s, %s)%s\n", calibrated->amax.size(),
                static_cast<long long>(calibrated->images), o.placement.c_str(),
                o.calib_method.c_str(),
                group ? str_cat("; broadcast to ", group->size() - 1,
                                group->size() == 2 ? " other rank" : " other ranks")
                            .c_str()
                      : "");
  }

  if (lead && group) {
    std::printf("processes %d (%s), %d images per step (--batch %d each)\n", group->size(),
                o.device == "cuda" ? "NCCL" : "Gloo", group->size() * o.batch, o.batch);
  }
  if (lead && o.epochs > 0 && o.annotations.empty())
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
  // One GPU per rank of this host (torchrun's LOCAL_RANK).
  tune.device = group && o.device == "cuda" ? str_cat("cuda:", env->local_rank) : o.device;
  tune.output_dir = o.output_dir;
  tune.resume = !o.no_resume;
  tune.group = group.get();
  tune.skip_all_reduce = std::getenv("QYOLO_QAT_NO_ALLREDUCE") != nullptr;  // test hook
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
  if (!lead) return 0;  // rank 0 exports what every rank holds
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
  CLI::Option* nproc = cmd->add_option(
      "--nproc", o->nproc,
      "Data-parallel processes to start here (Gloo; torchrun's RANK, WORLD_SIZE, MASTER_ADDR, "
      "MASTER_PORT start a rank instead); --batch is per process");
  cmd->add_option("--dist-timeout", o->dist_timeout,
                  "Seconds to wait for the other ranks (rendezvous and each collective)")
      ->capture_default_str();
  cmd->callback([o, distill_weight, nproc, &exit_code] {
    o->distill_weight_given = distill_weight->count() > 0;
    o->nproc_given = nproc->count() > 0;
    exit_code = run_qat(*o);
  });
}

}  // namespace qyolo::cli
