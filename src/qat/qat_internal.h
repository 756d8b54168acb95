// LibTorch side of QatModel: the graph interpreted node by node on torch tensors, so autograd
// sees every op. Only src/qat/*.cpp and the QAT test include this header.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/qat.h"

namespace qyolo {

struct QatModel::Impl {
  enum class Kind {
    kStatic,  // folded by shape inference; the value is in `constants`
    kConv,
    kBatchNorm,
    kSigmoid,
    kRelu,
    kLeakyRelu,
    kMul,
    kAdd,
    kSub,
    kDiv,
    kPow,
    kConcat,
    kSplit,
    kReshape,
    kTranspose,
    kSlice,
    kMaxPool,
    kResize,
    kIdentity,
    kFakeQuant,        // QuantizeLinear of an activation, per tensor
    kWeightFakeQuant,  // QuantizeLinear of a parameter, per output channel
    kDequantize,       // DequantizeLinear after one of the above: already float
  };
  struct Step {
    const Node* node = nullptr;
    Kind kind = Kind::kStatic;
    std::vector<int> inputs;  // value ids, -1 for an omitted input
    std::vector<int> outputs;
    double scale = 0.0;         // kFakeQuant
    std::vector<int64_t> ints;  // op-specific: perm, shape, split sizes, output size
  };

  Graph graph;
  torch::Device device = torch::kCPU;
  std::vector<std::string> value_names;
  std::vector<torch::Tensor> constants;      // by value id; undefined where computed
  std::vector<std::string> parameter_names;  // initializers that train
  std::vector<int> parameter_ids;
  std::vector<torch::Tensor> parameters;
  std::vector<Step> steps;
  int input_id = -1;
  std::vector<int> output_ids;

  // The graph outputs for an N x 3 x H x W input (throws c10::Error on a torch failure).
  std::vector<torch::Tensor> run(const torch::Tensor& input) const;
};

// qyolo tensor <-> torch tensor (copies).
torch::Tensor to_torch(const Tensor& tensor);
Expected<Tensor> from_torch(const torch::Tensor& tensor);

// The per-channel weight scale the model uses: max|w[c]| / 127, never 0.
torch::Tensor weight_scales(const torch::Tensor& weight);

// ---------------------------------------------------------------------------------------
// YOLOv5 v7.0's detection loss (utils/loss.py ComputeLoss, src/qat/detection_loss.cpp).

// hyp.scratch-low.yaml's loss gains, before train.py scales them (detection_loss_gains).
struct DetectionLossHyp {
  double box = 0.05, obj = 1.0, cls = 0.5;
  double anchor_t = 4.0;  // a target matches an anchor when both w and h ratios are below it
  double label_smoothing = 0.0;
  std::vector<double> balance = {4.0, 1.0, 0.4};  // objectness weight per head (P3, P4, P5)
};

// train.py's scaling: box *= 3 / nl; cls *= nc / 80 * 3 / nl; obj *= (imgsz / 640)^2 * 3 / nl.
DetectionLossHyp detection_loss_gains(DetectionLossHyp hyp, int num_heads, int num_classes,
                                      int image_size);

struct DetectionLoss {
  torch::Tensor total;          // (box + obj + cls) * batch, shape [1]; what is minimised
  torch::Tensor box, obj, cls;  // the gained terms, shape [1] each (ComputeLoss's loss items)
};

// ComputeLoss.__call__: `heads` are Detect's training outputs, N x na x H x W x (5 + nc) each
// (detect_layout); `targets` M x 6 rows (image, class, x, y, w, h), normalised to the input;
// `anchors` nl x na x 2 in grid units (pixels / stride). `hyp` is already scaled.
DetectionLoss detection_loss(const std::vector<torch::Tensor>& heads, const torch::Tensor& targets,
                             const torch::Tensor& anchors, const DetectionLossHyp& hyp);

// A raw head convolution output N x (na * (5 + nc)) x H x W as N x na x H x W x (5 + nc).
torch::Tensor detect_layout(const torch::Tensor& head, int64_t num_anchors);

// The distillation loss of the student's head outputs against the teacher's (raw head
// convolutions, N x na * (5 + nc) x H x W each), averaged over the heads; the teacher's side
// gets no gradient.
torch::Tensor distillation_loss(const std::vector<torch::Tensor>& student,
                                const std::vector<torch::Tensor>& teacher,
                                DistillationTarget target, int64_t num_anchors);

// YOLOv5's default anchors in grid units (pixels / stride 8, 16, 32): 3 x 3 x 2.
torch::Tensor default_grid_anchors(const torch::TensorOptions& options);

// ---------------------------------------------------------------------------------------
// Collectives of a data-parallel run (src/qat/distributed.cpp); they throw c10::Error.

// Every parameter's gradient replaced by its mean over the ranks (an undefined one counts 0).
void average_gradients(ProcessGroup& group, const std::vector<torch::Tensor>& parameters);
// Every rank's parameters set to rank `root`'s.
void broadcast_parameters(ProcessGroup& group, const std::vector<torch::Tensor>& parameters,
                          int root);

}  // namespace qyolo
