// A 2-D convolution through oneDNN with its activation fused as a post-op. oneDNN carries
// well-tuned AVX2/AVX-512 kernels, so qyolo keeps no GEMM of its own for FP32.
#pragma once

#include <memory>

#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo::cpu {

enum class FusedActivation { kNone, kSilu, kSigmoid };

class OnednnConv {
 public:
  // Prepares the primitive for channels-last (NHWC) float32 data; shapes are given in NCHW
  // order. Weights (and bias) are
  // reordered once into oneDNN's preferred layout.
  static Expected<std::unique_ptr<OnednnConv>> create(const Node& node, const Tensor& weight,
                                                      const Tensor* bias, const Shape& input_shape,
                                                      const Shape& output_shape,
                                                      FusedActivation activation);
  ~OnednnConv();
  // Computes y = act(conv(x)); shapes are those given to create().
  Status run(const Tensor& input, Tensor& output);
  // "jit:avx2", "gemm:jit", ...: the implementation oneDNN chose.
  const char* implementation() const;

  struct Impl;

 private:
  explicit OnednnConv(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qyolo::cpu
