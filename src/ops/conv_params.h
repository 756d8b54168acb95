// Resolved 2-D convolution / pooling geometry shared by the reference and fast kernels.
#pragma once

#include <array>
#include <string>

#include "qyolo/graph.h"
#include "qyolo/status.h"

namespace qyolo::ops {

struct Window2d {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t out_h = 0, out_w = 0;
};

// Reads kernel_shape (or `kernel_h/w` when absent), strides, dilations, pads, auto_pad and
// ceil_mode from the node and computes the output size for an in_h x in_w input.
Expected<Window2d> resolve_window(const Node& node, int64_t in_h, int64_t in_w, int64_t kernel_h,
                                  int64_t kernel_w);

// Why a Conv does not fit conv_int8.h ("grouped convolution", "asymmetric padding", ...), or ""
// when it does: one group, square kernel, equal strides and pads, no dilation. The INT8
// reference backend and the engine builder decide with it.
std::string conv_int8_unsupported(const Node& node, const Shape& x, const Shape& w);

}  // namespace qyolo::ops
