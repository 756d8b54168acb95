// Quantization-aware training: a float YOLOv5 graph -> Q/DQ inserted in NVIDIA's placements
// (quant.h's insert_qdq) -> calibrated with quant.h's calibrators -> fine-tuned with fake
// quantization in LibTorch -> a QAT ONNX that `qyolo translate` reads. LibTorch stays behind
// this header: nothing here names a torch type, so only src/qat/ compiles against it.
// docs/qat.md describes the design.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/quant.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"
#include "qyolo/vision.h"

namespace qyolo {

// ---------------------------------------------------------------------------------------
// Graph passes (no LibTorch).

// head_conv_outputs and trim_at_heads: qyolo/quant.h.

// The graph with its (first) input fixed to 1x3x<size>x<size>; shapes are re-inferred, so a
// full export whose Detect constants only fit its own size is refused with the node named.
Expected<Graph> with_input_size(const Graph& graph, int size);

// Q/DQ inserted in `placement`, activations calibrated with `options` (max, percentile,
// entropy, MSE as `qyolo calibrate` computes them) on the letterboxed `images` at `size`.
// A shared quantizer takes the largest amax of the tensors it covers.
struct QatCalibration {
  Graph graph;                        // the QAT graph (weights per channel, max|w|/127)
  std::map<std::string, float> amax;  // per calibrated activation
  int64_t images = 0;                 // images used (unreadable ones are skipped)
  std::vector<std::string> skipped;   // messages for the unreadable ones
};
Expected<QatCalibration> calibrate_qat(const Graph& fp32, QdqPlacement placement,
                                       const std::vector<std::string>& images, int size,
                                       const CalibrationOptions& options,
                                       const std::function<void(int64_t)>& progress = {});

// The QAT graph rounded where the INT8 engine rounds (docs/int8_reference.md), for the
// fine-tuning student: the Q/DQ pairs inside a Conv+SiLU (on the Conv output and the Sigmoid
// output, which the engine's fused layer never rounds) are bypassed, and so are the input and
// weight Q/DQ of each Conv that runs FP16 there: its (SiLU) output reaches no QuantizeLinear
// (the heads) or `fp16_layers` names it (--layerPrecisions). Unused Q/DQ nodes are removed.
Graph engine_rounding(const Graph& qat, const std::set<std::string>& fp16_layers = {});

// The .jpg/.jpeg/.png files under `dir` (sub-folders too), sorted; an error names a folder
// that is missing or holds none.
Expected<std::vector<std::string>> list_training_images(const std::string& dir);

// ---------------------------------------------------------------------------------------
// Augmentation (YOLOv5's basics) and logs (no LibTorch).

struct AugmentOptions {
  double scale = 0.5;  // the letterbox long side is size * U(1 - scale, 1)
  double flip = 0.5;   // probability of a horizontal flip
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;  // ultralytics' augment_hsv gains
};

// HSV jitter as ultralytics' augment_hsv does it (OpenCV's 8-bit HSV, LUTs per channel).
void augment_hsv(Image& image, double hue_gain, double saturation_gain, double value_gain);

// Where augment() put the image: its letterbox on the canvas, then whether it was mirrored.
struct AugmentPlacement {
  Letterbox letterbox;
  bool flipped = false;
};
// A training sample: HSV jitter, a random letterbox scale onto a size x size canvas, a flip.
Image augment(const Image& image, int size, const AugmentOptions& options, std::mt19937_64& rng,
              AugmentPlacement* placement = nullptr);

// ---------------------------------------------------------------------------------------
// Labels for supervised fine-tuning (no LibTorch).

// A ground-truth box of a training image: its 80-class index and COCO's x, y, width, height
// in pixels of the original image.
struct TrainingBox {
  int class_index = 0;
  double x = 0, y = 0, width = 0, height = 0;
};

// The boxes of each of `images` (same order) from the COCO instances file `annotations`; an
// image's file_name matches its path relative to `images_dir`, or its file name. Crowd
// annotations and empty boxes are left out, as in ultralytics' COCO labels; images without
// annotations get none. Errors (naming the file): not a COCO instances file, images of the
// file that are not among `images` (how many, and the first), a category outside COCO's 80.
Expected<std::vector<std::vector<TrainingBox>>> load_training_labels(
    const std::string& annotations, const std::vector<std::string>& images,
    const std::string& images_dir);

// YOLOv5 training targets (class, x, y, w, h; centre and size normalised to the canvas) of
// `boxes` after augment() placed their image: scaled and shifted as its pixels were,
// mirrored with it, clipped to the image; boxes under 2 pixels wide or high are dropped
// (ultralytics' box_candidates).
std::vector<std::array<float, 5>> augmented_targets(const std::vector<TrainingBox>& boxes,
                                                    const AugmentPlacement& placement);

// A line plot of `values` (x = index + 1) as a PNG at `path`.
Status write_loss_plot(const std::vector<double>& values, const std::string& title,
                       const std::string& path);

// ---------------------------------------------------------------------------------------
// Training (LibTorch).

// A trainable copy of a graph: parameters are the float Conv weights and biases and the
// BatchNormalization scales and shifts, by initializer name; QuantizeLinear ->
// DequantizeLinear pairs run as fake quantization with a straight-through estimator
// (weights per output channel with scale max|w[c]|/127 from the current weights).
class QatModel {
 public:
  // An error names the first node whose op the trainer lacks, or what else is wrong.
  // `device` is "cpu" or "cuda" (an error when this LibTorch has no CUDA).
  static Expected<std::unique_ptr<QatModel>> create(const Graph& graph,
                                                    const std::string& device = "cpu");
  ~QatModel();
  QatModel(const QatModel&) = delete;
  QatModel& operator=(const QatModel&) = delete;

  // Runs the graph on an N x 3 x H x W float32 input; the graph outputs, in order.
  Expected<std::vector<Tensor>> forward(const Tensor& input);
  // The graph with the current parameters and weight scales written back.
  Expected<Graph> to_graph() const;
  int64_t num_parameters() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit QatModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------
// Data-parallel fine-tuning (LibTorch's c10d: Gloo on CPUs, NCCL between GPUs; docs/scale.md).

// Where this process sits in a data-parallel run, from torchrun's environment variables.
struct DistributedEnv {
  int rank = 0;                           // RANK
  int world_size = 1;                     // WORLD_SIZE
  int local_rank = 0;                     // LOCAL_RANK (default: RANK)
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR
  int master_port = 29500;                // MASTER_PORT
};

// The run described by `getenv` (std::getenv in the CLI): none of RANK and WORLD_SIZE set is
// one process. Errors name the variable: one of RANK and WORLD_SIZE without the other, a value
// that is not a number or out of range (RANK >= WORLD_SIZE, a port outside 1-65535).
Expected<DistributedEnv> distributed_env(const std::function<const char*(const char*)>& getenv);

// Whether this LibTorch has c10d with Gloo, so that a run can have several processes.
bool qat_distributed_available();

// The process group of a data-parallel run: every rank creates one with the same
// world_size; rank 0 serves the rendezvous at master_addr:master_port. Collectives throw
// nothing: a failure (a rank gone, the timeout passed) is a Status.
class ProcessGroup {
 public:
  // Joins the group within `timeout_seconds`. `device` "cpu" uses Gloo, "cuda" NCCL. Errors:
  // this LibTorch has no distributed support (and how to get one), the master cannot be
  // reached or the other ranks do not come in time.
  static Expected<std::unique_ptr<ProcessGroup>> create(const DistributedEnv& env,
                                                        const std::string& device = "cpu",
                                                        double timeout_seconds = 300.0);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  // Every rank's `values` becomes rank `root`'s; all ranks pass the same length.
  Status broadcast(std::vector<float>& values, int root = 0);
  // Every rank's `values` becomes the elementwise sum over the ranks.
  Status all_reduce_sum(std::vector<double>& values);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The QAT graph calibrate_qat makes from these activation ranges (a rank that did not
// calibrate builds it from rank 0's broadcast amax), and the activations it calibrates, in a
// fixed order.
Expected<Graph> qat_graph_from_amax(const Graph& fp32, QdqPlacement placement,
                                    const std::map<std::string, float>& amax);
Expected<std::vector<std::string>> qat_calibrated_tensors(const Graph& fp32,
                                                          QdqPlacement placement);

// What label-free distillation compares on the three heads (docs/qat.md).
enum class DistillationTarget {
  kLogits,      // the raw head outputs: MSE over every element
  kSigmoid,     // the outputs after Detect's sigmoid: MSE over every element
  kObjectness,  // after the sigmoid, each anchor weighted by max(student, teacher) objectness
};

// "logits", "sigmoid", "objectness" (--distill-on); an error lists them.
Expected<DistillationTarget> parse_distillation_target(const std::string& name);
const char* distillation_target_name(DistillationTarget target);

struct FineTuneOptions {
  int epochs = 1;
  int batch = 4;
  double lr = 1e-4;  // cosine decay to lr * lr_final over all steps
  double lr_final = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  int image_size = 640;  // training canvas (the trimmed graph runs at any size)
  uint64_t seed = 0;
  int max_images = 0;  // 0: all
  AugmentOptions augment;
  // Supervised fine-tuning: the boxes of each image (load_training_labels), aligned with
  // `images`; empty: distillation only.
  std::vector<std::vector<TrainingBox>> labels;
  // Weight of the distillation term; < 0: 1 without labels, 0 with them (detection loss only).
  double distill_weight = -1.0;
  DistillationTarget distill_on = DistillationTarget::kLogits;
  // The student rounds as the INT8 engine will (engine_rounding) rather than at every Q/DQ
  // of `qat`; fp16_layers are the engine's --layerPrecisions.
  bool engine_rounding = false;
  std::set<std::string> fp16_layers;
  std::string device = "cpu";
  std::string output_dir;  // checkpoint.pt, log.csv, loss.png
  bool resume = true;      // continue from output_dir/checkpoint.pt when it exists
  // Data-parallel (not owned; null: one process): `batch` images per rank and step, the
  // epoch's order split by rank, gradients averaged over the ranks every step; rank 0 alone
  // writes the checkpoint, log.csv and loss.png and reports progress (images/s of all ranks).
  // output_dir must be a folder every rank sees: each reads the checkpoint to resume.
  ProcessGroup* group = nullptr;
  // Test hook: each rank trains on its shard alone (no gradient all-reduce).
  bool skip_all_reduce = false;
  // Test hook: the loss at this global step (1-based) is replaced by NaN.
  int64_t inject_nan_at_step = 0;
};

struct EpochLog {
  int epoch = 0;
  double loss = 0.0;
  double lr = 0.0;
  double images_per_second = 0.0;
};

struct FineTuneProgress {
  int epoch = 0, epochs = 0;
  int64_t step = 0, steps = 0;  // within the epoch
  double loss = 0.0, images_per_second = 0.0;
};

struct FineTuneResult {
  Graph graph;  // the fine-tuned QAT graph (full, as `qat` came in)
  std::vector<EpochLog> log;
  int resumed_from_epoch = 0;
  double seconds = 0.0;
};

// Fine-tunes `qat` (fp32 with Q/DQ inserted). Label-free distillation: the FP32 graph `fp32`
// is the teacher and the loss compares the three head outputs as options.distill_on says.
// With options.labels, the loss is YOLOv5 v7.0's detection loss on the student's heads plus
// distill_weight times the distillation term (docs/qat.md). Each epoch writes
// output_dir/checkpoint.pt (written aside, then renamed, so a failure keeps the last good one),
// log.csv and loss.png. A rerun resumes from the checkpoint; one made for another model, placement
// or loss is an error that says so. A non-finite loss stops with the step named.
Expected<FineTuneResult> fine_tune(
    const Graph& fp32, const Graph& qat, const std::vector<std::string>& images,
    const FineTuneOptions& options,
    const std::function<void(const FineTuneProgress&)>& progress = {});

// Whether this LibTorch was built with CUDA and sees a GPU.
bool qat_cuda_available();

}  // namespace qyolo
