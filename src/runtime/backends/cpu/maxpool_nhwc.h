// MaxPool on channels-last (NHWC) float tensors: the inner loop runs along channels, which
// keeps it vectorised inside the executor's NHWC region.
#pragma once

#include "qyolo/graph.h"
#include "qyolo/tensor.h"

namespace qyolo::cpu {

// `input` and `output` are physically N x H x W x C; the node's window is in H and W.
Status maxpool_nhwc(const Node& node, const Tensor& input, Tensor& output);

}  // namespace qyolo::cpu
