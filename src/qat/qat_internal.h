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

}  // namespace qyolo
