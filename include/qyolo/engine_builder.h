// The engine builder: an ONNX graph and a calibration cache in, an Engine (qyolo/engine.h) out,
// through named passes that each report what they did (docs/engine_builder.md). The numerics
// are those of the INT8 CPU reference backend (qyolo/int8.h): an engine built for the cpu
// target computes bit for bit what Int8Executor computes on the same graph and scales.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qyolo/engine.h"
#include "qyolo/graph.h"
#include "qyolo/status.h"

namespace qyolo {

struct BuildOptions {
  EngineTarget target = EngineTarget::kCpu;
  int max_batch = 1;
  // --int8 with its cache: activation scale (amax / 127) per tensor. Without --int8 every
  // layer is fp16.
  bool int8 = true;
  std::map<std::string, float> scales;
  std::set<std::string> fp16_layers;  // --layerPrecisions name:fp16
  IoFormat input_format = IoFormat::kFp32Chw;
  IoFormat output_format = IoFormat::kFp32Chw;
  bool fusion = true;        // false: QYOLO_DISABLE_FUSION=1, the unfused graph
  bool reuse_memory = true;  // false: every buffer its own bytes (per-layer debugging)
  // Concat inputs at another scale requantized by their producers (MaxPool, Resize, a conv's
  // third rounding or second output); false: QYOLO_KEEP_CONCAT_COPIES=1, Requantize layers for
  // them as before format 2 (for timing comparisons).
  bool fuse_concat_copies = true;
  std::map<std::string, Shape> input_shapes;
  std::string source;  // model file name, recorded in the engine
  std::string qyolo_version = "0.1.0";
};

// ---------------------------------------------------------------------------------------------
// The builder's working form: layers over values, before the arena exists. Passes rewrite it.

enum class BuildOp {
  kConv,
  kSigmoid,
  kMul,
  kAdd,
  kConcat,
  kMaxPool,
  kResize,
  kConvert,
  kInputReformat,
  kOutputReformat
};

struct BuildValue {
  std::string name;
  int channels = 0, height = 0, width = 0;
  ElementType type = ElementType::kFloat32;  // decided by assign_precision
  float scale = 0.0f;                        // 0: the cache has none
  int producer = -1;                         // layer index; -1 for a graph input
  // Concat removal: this value is the channel slice [offset, offset + channels) of `parent`.
  int parent = -1;
  int channel_offset = 0;
  bool graph_output = false;
};

struct BuildLayer {
  BuildOp op = BuildOp::kConv;
  std::vector<std::string> nodes;  // ONNX node names it covers
  std::vector<int> inputs;         // value indices (kInputReformat: the graph input's index)
  int output = -1;                 // value index (kOutputReformat: the graph output's index)
  ElementType precision = ElementType::kFloat32;
  std::string reason;  // why not int8
  bool removed = false;
  // kConv
  const Node* node = nullptr;
  Activation activation = Activation::kNone;
  int residual = -1;              // value index of a fused Add's other input
  std::string activation_output;  // value the unfused activation wrote (report)
  // > 0: the int8 conv rounds at this scale (its own, from the cache) before writing its output
  // at the output value's scale: a Concat input written in place although the Concat has
  // another scale, the reference's requantizing copy fused (remove_concat).
  float conv_scale = 0.0f;
  // A Concat's requantizing copy done by this layer (int8 Conv, MaxPool, Resize; EngineLayer
  // says how): > 0: the layer rounds at this scale (its own tensor's, read by the Concat alone)
  // and writes its output value, now the Concat's slice, requantized; also_output >= 0: the
  // value index of the Concat slice that receives the output requantized, besides the output.
  float requant_from = 0.0f;
  int also_output = -1;
  // kMaxPool / kResize
  int kernel = 1, stride = 1, pad = 0, factor = 1;
};

struct BuildGraph {
  std::shared_ptr<const Graph> graph;  // sorted, folded; layers point at its nodes
  ShapeInfo shapes;
  std::vector<BuildValue> values;
  std::vector<BuildLayer> layers;
  std::map<std::string, int> value_index;
  std::vector<int> inputs, outputs;  // value indices of the graph inputs and outputs
  int find(const std::string& name) const {
    auto it = value_index.find(name);
    return it == value_index.end() ? -1 : it->second;
  }
};

// What a pass did, one line: "fuse_conv_activation: 57 Conv+SiLU, 0 Conv+Sigmoid".
struct PassReport {
  std::string pass;
  std::string summary;
};

// The passes, in the order build_engine runs them. Each is a function of the BuildGraph, so a
// test can run one on a small graph and look at the result.
Expected<BuildGraph> import_graph(const Graph& graph, const BuildOptions& options,
                                  std::vector<PassReport>& report);  // constant folding, trim
Status assign_precision(BuildGraph& g, const BuildOptions& options, PassReport& report);
Status fuse_conv_activation(BuildGraph& g, PassReport& report);
Status fuse_residual_add(BuildGraph& g, PassReport& report);
Status insert_precision_converts(BuildGraph& g, PassReport& report);
Status remove_concat(BuildGraph& g, const BuildOptions& options, PassReport& report);
Status insert_io_reformats(BuildGraph& g, const BuildOptions& options, PassReport& report);

struct BuildResult {
  Engine engine;
  std::vector<PassReport> passes;
  uint64_t unplanned_bytes_per_image = 0;  // every activation in its own buffer
};

// Runs every pass, plans the arena (liveness: buffers whose lifetimes do not overlap share
// bytes) and packs the weights. Errors name the node or tensor at fault.
Expected<BuildResult> build_engine(const Graph& graph, const BuildOptions& options);

// Plans Engine::buffers offsets from their lifetimes and sizes; returns the arena bytes per
// image. Greedy: largest first, at the lowest offset free for its whole lifetime.
uint64_t plan_arena(std::vector<ArenaBuffer>& buffers);

}  // namespace qyolo
