// Two small oneDNN primitives the executor uses outside convolutions: a JIT Sigmoid (the
// detect head applies it to ~2M values, where libm's expf is the slow part) and the
// NCHW <-> NHWC reorder at the edges of the channels-last region.
#pragma once

#include <memory>

#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo::cpu {

class OnednnPrimitive {
 public:
  // y = 1 / (1 + exp(-x)) over `count` float32 values.
  static Expected<std::unique_ptr<OnednnPrimitive>> sigmoid(int64_t count);
  // Reorders a float32 tensor of NCHW-ordered `logical_shape` into NHWC (`to_nhwc`) or back.
  static Expected<std::unique_ptr<OnednnPrimitive>> reorder(const Shape& logical_shape,
                                                            bool to_nhwc);
  ~OnednnPrimitive();
  Status run(const Tensor& input, Tensor& output);

  struct Impl;

 private:
  explicit OnednnPrimitive(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qyolo::cpu
