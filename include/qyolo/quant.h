// Quantization: TensorRT calibration caches, the Q/DQ translator (a QAT ONNX model -> the same
// model without Q/DQ plus per-tensor INT8 scales, as NVIDIA's qdq_translator does it), and a
// Q/DQ insertion pass that makes QAT-style models in NVIDIA's two placements.
// docs/qdq_translator.md lists the translator's rules.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

// ---------------------------------------------------------------------------------------
// Calibration cache: "TRT-<version>-<Algorithm>", then "<tensor>: <hex>" per tensor, the hex
// being the float32 bit pattern of the scale (amax / 127), lowercase, without leading zeros.

struct CacheEntry {
  std::string tensor;
  float scale = 0.0f;  // positive and finite
};

struct CalibrationCache {
  std::string version = "8600";
  std::string algorithm = "EntropyCalibration2";
  std::vector<CacheEntry> entries;  // in file order

  // The entry for `tensor`, or nullptr.
  const CacheEntry* find(const std::string& tensor) const;
};

// Parses cache text; `source` names it in errors ("<source>:<line>: ..."). Any hex width is
// accepted; a malformed line, a repeated tensor, or a scale <= 0, NaN or inf is an error.
Expected<CalibrationCache> parse_calibration_cache(const std::string& text,
                                                   const std::string& source);
Expected<CalibrationCache> read_calibration_cache(const std::string& path);
// The cache text; an error names an entry with an invalid scale or name.
Expected<std::string> format_calibration_cache(const CalibrationCache& cache);
Status write_calibration_cache(const CalibrationCache& cache, const std::string& path);
// "3c00f9f4" for 0.0078721f: the bit pattern in lowercase hex, no leading zeros.
std::string scale_to_hex(float scale);
// The cache's tensors that name no value of `graph` (input, initializer or node output),
// in cache order: a cache made for another model.
std::vector<std::string> cache_tensors_missing_from(const CalibrationCache& cache,
                                                    const Graph& graph);

// ---------------------------------------------------------------------------------------
// The Q/DQ translator.

// What a SiLU's Sigmoid output gets under --infer-mul-scales: 1/127 as NVIDIA's published
// translator writes, or the Mul output's scale as NVIDIA's shipped yolov5s cache has it. The
// latter uses the rules that reproduce the shipped cache, its line order included: both SiLU
// inputs take the Mul output's scale in the backward pass, and a Concat none of whose inputs
// has a scale hands its own to them in the forward pass.
enum class SigmoidScale { kUnit, kMulOutput };

struct TranslateOptions {
  bool infer_concat_scales = false;        // --infer-concat-scales
  bool infer_mul_scales = false;           // --infer-mul-scales
  bool infer_average_pool_scales = false;  // --infer-average-pool-scales
  std::vector<std::string> extra_ops;      // --addtl-ops-to-infer-adjacent-scales
  bool add_unary_ew_scales_for_dla = false;
  bool check_weight_scales = true;   // --calibration-type max: weight scales = max|w[c]| / 127
  bool rename_node_outputs = false;  // every output renamed after its node
  SigmoidScale sigmoid_scale = SigmoidScale::kUnit;
  // Beyond NVIDIA: Concat and Mul inference on, scales through Add, Resize, Split and Slice,
  // weights clamped to the QAT range, and the complete FP16 fallback list.
  bool infer_all = false;
};

enum class ScaleSource { kQdq, kGraphOutput, kForward, kBackward, kUnaryDla };

struct TensorScale {
  std::string tensor;
  double scale = 0.0;  // a double, as the Python translator keeps it; the cache rounds to float
  ScaleSource source = ScaleSource::kQdq;
};

// A value left without a scale, and what that means for its consumers.
struct UnscaledTensor {
  std::string tensor;
  std::string producer;                // node name; "" for a graph input
  std::string producer_op;             // "" for a graph input
  std::vector<std::string> consumers;  // node names
  std::string reason;
};

struct Translation {
  Graph graph;                      // the model without Q/DQ, FP32 weights
  std::vector<TensorScale> scales;  // "int8_tensor_scales", in NVIDIA's order
  std::vector<std::string> fp16_nodes;
  std::vector<UnscaledTensor> unscaled;  // every node output (and input) without a scale
  std::vector<std::string> warnings;
  int activation_qdq = 0;  // Q/DQ pairs removed
  int weight_qdq = 0;
  int inferred = 0;  // scales that came from the inference passes
};

// Translates a QAT graph. Errors name the node: a zero point that is not int8 0, Q and DQ
// scales that differ, a Q not followed by one DQ, a per-channel activation scale, or (with
// check_weight_scales) weight scales that are not max|w[c]|/127.
Expected<Translation> translate_qdq(const Graph& qat, const TranslateOptions& options = {});

// The scales as a calibration cache (values rounded to float32).
Expected<CalibrationCache> translation_cache(const Translation& translation,
                                             const std::string& trt_version = "8600");
// `{"int8_tensor_scales": {...}, "fp16_nodes": [...]}` byte for byte as Python's
// json.dump(indent=4) writes it.
std::string precision_config_json(const Translation& translation);
// The --layerPrecisions value: "name:fp16," per FP16 node.
std::string layer_precisions_arg(const Translation& translation);

struct TranslationFiles {
  std::string onnx, cache, json, layer_arg;
};
// NVIDIA's file names: <stem>_noqdq.onnx, <stem>_precision_config_calib.cache, ...
TranslationFiles translation_files(const std::string& dir, const std::string& stem);
// Writes the four files into `dir` (created if missing).
Expected<TranslationFiles> write_translation(const Translation& translation, const std::string& dir,
                                             const std::string& stem,
                                             const std::string& trt_version = "8600");

// Python's repr() of a double: the shortest text that reads back to it ("1e-05", "1.0").
std::string python_float_repr(double value);

// ---------------------------------------------------------------------------------------
// Q/DQ insertion: a float graph -> a QAT-style graph, scales from measured ranges.

// NVIDIA's placements (cuDLA-samples export/yolov5-qat):
//  kTensorRT (Option 1): Q/DQ on each Conv input (per tensor) and weight (per output channel),
//    and on both inputs of residual Adds; quantizers shared as quantization/rules.py does:
//    the convs reading a Concat's output and those reading its inputs share one, as do the
//    convs around a MaxPool, and a residual Add shares the quantizer of the conv reading it.
//  kAllNodes (Option 2, --all-node-with-qdq): every Conv as above, plus both inputs of each
//    SiLU's Mul (x and sigmoid(x)), all inputs of each Concat feeding a Conv (one quantizer),
//    and both inputs of each residual Add (one quantizer). No sharing across layers.
enum class QdqPlacement { kTensorRT, kAllNodes };

// The activation values `placement` quantizes, in node order: what calibration must measure.
std::vector<std::string> qdq_activation_tensors(const Graph& graph, QdqPlacement placement);

// max |x| of each listed value over the input batches, run through the FP32 CPU executor.
Expected<std::map<std::string, float>> max_abs_ranges(
    const Graph& graph, const std::vector<std::map<std::string, Tensor>>& batches,
    const std::vector<std::string>& tensors);

// Deterministic stand-in ranges (0.5 .. 8.5, from a hash of the name) for tests.
std::map<std::string, float> synthetic_ranges(const std::vector<std::string>& tensors);

// The graph at opset 13 (per-channel Q/DQ needs it): Split, Squeeze and Unsqueeze move their
// attribute to an input. A graph already at 13 or later is returned unchanged.
Expected<Graph> upgrade_to_opset13(const Graph& graph);

// Inserts Q/DQ pairs (int8, zero point 0, scale = amax / 127) in `placement`; weights get
// per-channel scales max|w[c]| / 127. `activation_amax` must hold every value that
// qdq_activation_tensors lists. The result is at opset 13 or later.
Expected<Graph> insert_qdq(const Graph& graph, QdqPlacement placement,
                           const std::map<std::string, float>& activation_amax);

}  // namespace qyolo
