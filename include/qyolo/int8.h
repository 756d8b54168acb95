// The INT8 CPU reference backend: runs a float graph with per-tensor activation scales (from a
// calibration cache) exactly as DESIGN.md's numerics say. Convolutions use the arithmetic of
// qyolo/conv_int8.h (int32 accumulation, float epilogue with fused SiLU, round-half-even
// requantization), the same definition the CUDA kernels meet. It is the oracle, not the fast
// path: clarity over speed.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

struct Int8Options {
  // Activation scale (amax / 127) per tensor name, e.g. from a calibration cache.
  std::map<std::string, float> scales;
  // Node names that must run in FP16 (trtexec's --layerPrecisions name:fp16).
  std::set<std::string> fp16_layers;
  // Overrides the graph inputs' shapes.
  std::map<std::string, Shape> input_shapes;
};

// What the builder decided for one layer (a node, or a Conv with its fused activation).
struct LayerPrecision {
  std::string name;       // the (first) node's name
  std::string op;         // "Conv+SiLU", "MaxPool", ...
  std::string precision;  // "int8", "fp16", or "fp32" for a layer the cache does not cover
  std::string reason;     // why it is not int8 ("" when it is)
};

class Int8Executor {
 public:
  static Expected<std::unique_ptr<Int8Executor>> create(const Graph& graph, Int8Options options);
  ~Int8Executor();
  Int8Executor(const Int8Executor&) = delete;
  Int8Executor& operator=(const Int8Executor&) = delete;

  // Runs the graph on float32 inputs; returns the float32 graph outputs.
  Expected<std::map<std::string, Tensor>> run(const std::map<std::string, Tensor>& inputs);
  const std::vector<ValueInfo>& inputs() const;
  const std::vector<ValueInfo>& outputs() const;
  // One entry per layer, in execution order.
  const std::vector<LayerPrecision>& layers() const;

  struct Impl;

 private:
  explicit Int8Executor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses trtexec's --layerPrecisions value: "name:fp16,name2:fp16", names optionally quoted
// ("/model.24/m.0/Conv":fp16). Only fp16 (and int8, which is the default) are accepted.
Expected<std::set<std::string>> parse_layer_precisions(const std::string& text);

// Rounds a float to the nearest float16 value (as a float).
float round_to_half(float value);

}  // namespace qyolo
