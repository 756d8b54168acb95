// Quantization: TensorRT calibration caches, the Q/DQ translator (a QAT ONNX model -> the same
// model without Q/DQ plus per-tensor INT8 scales, as NVIDIA's qdq_translator does it), a
// Q/DQ insertion pass that makes QAT-style models in NVIDIA's two placements, and
// post-training calibration (histograms of |x|; max, percentile, entropy, MSE).
// docs/qdq_translator.md lists the translator's rules.
#pragma once

#include <map>
#include <memory>
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

// ---------------------------------------------------------------------------------------
// Post-training calibration: per-tensor histograms of |x| and amax by max, percentile,
// TensorRT's entropy (KL divergence) or MSE, as pytorch-quantization's HistogramCalibrator
// computes them. docs/calibration.md describes the methods.

// Histogram of |x|: the first batch with a non-zero value sets the bin width to its
// max / num_bins; a later, larger max appends bins of that width, so earlier counts keep
// their bins (pytorch-quantization's growth rule). Values 0 seen before that go to bin 0.
class AbsHistogram {
 public:
  static constexpr int kDefaultBins = 2048;
  explicit AbsHistogram(int num_bins = kDefaultBins);
  // A histogram with the given counts and bin width (bin i covers [i*w, (i+1)*w)).
  static AbsHistogram from_counts(std::vector<int64_t> counts, double bin_width);

  // Adds |x| of `count` values; NaN or inf is an error and leaves the histogram unchanged.
  Status add(const float* values, int64_t count);

  const std::vector<int64_t>& counts() const { return counts_; }
  double bin_width() const { return width_; }
  // The upper edge of the last bin (0 while every value seen was 0).
  double range() const { return width_ * static_cast<double>(counts_.size()); }
  float max_abs() const { return max_; }  // the exact max |x| seen
  int64_t total() const { return total_; }

 private:
  int num_bins_;
  double width_ = 0.0;
  std::vector<int64_t> counts_;
  int64_t leading_zeros_ = 0;  // zeros seen before the width was known
  float max_ = 0.0f;
  int64_t total_ = 0;
};

// amax from a histogram, as pytorch-quantization's _compute_amax_* functions compute it.
// `num_bits` and `is_unsigned` give the quantized levels: 8 signed = 128 levels for entropy,
// [-127, 127] for MSE (symmetric INT8, scale = amax / 127). An empty histogram gives 0.
// Percentile: the lower edge of the bin where the cumulative fraction reaches percentile/100.
double histogram_amax_percentile(const AbsHistogram& histogram, double percentile);
// Entropy: the edge i*w (start_bin <= i <= bins, every `stride`) whose 128-level
// requantization of bins [0, i) (outliers folded into bin i-1) has the least KL divergence
// from the histogram; ties go to the largest i. Bin 0 counts as bin 1, as TensorRT does.
double histogram_amax_entropy(const AbsHistogram& histogram, int start_bin = 128, int stride = 1,
                              int num_bits = 8, bool is_unsigned = false);
// MSE: the bin centre (start_bin <= i < bins) that, as amax, minimizes the count-weighted
// squared error of fake-quantizing every bin centre; ties go to the smallest.
double histogram_amax_mse(const AbsHistogram& histogram, int start_bin = 128, int stride = 1,
                          int num_bits = 8, bool is_unsigned = false);

enum class CalibrationMethod { kMax, kPercentile, kEntropy, kMse };

// "max", "percentile", "entropy" or "mse"; anything else is an error listing these.
Expected<CalibrationMethod> parse_calibration_method(const std::string& name);
// The cache header's algorithm: MaxCalibration, PercentileCalibration, EntropyCalibration2
// (what TensorRT's IInt8EntropyCalibrator2 writes) or MSECalibration.
const char* calibration_algorithm(CalibrationMethod method);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::kEntropy;
  double percentile = 99.99;  // in (0, 100]
  int num_bins = AbsHistogram::kDefaultBins;
  int start_bin = 128;  // entropy and MSE
  int stride = 1;       // entropy and MSE
  int num_bits = 8;
  bool is_unsigned = false;
};

// The values a calibration measures: the float32 graph inputs and every float32 node output
// that is not a constant (shape arithmetic and folded values are left out), inputs first,
// then in node order. Names are the ONNX value names, as the cache keys them.
Expected<std::vector<std::string>> calibration_tensors(
    const Graph& graph, const std::map<std::string, Shape>& input_shapes = {});

// Runs batches through the FP32 CPU executor and collects max |x| and a histogram of |x| for
// each calibration tensor.
class Calibrator {
 public:
  // `tensors` empty: calibration_tensors(graph). `input_shapes` fixes symbolic inputs.
  static Expected<std::unique_ptr<Calibrator>> create(
      const Graph& graph, std::vector<std::string> tensors = {},
      const std::map<std::string, Shape>& input_shapes = {},
      int num_bins = AbsHistogram::kDefaultBins);
  ~Calibrator();
  Calibrator(const Calibrator&) = delete;
  Calibrator& operator=(const Calibrator&) = delete;

  // Runs one batch (every graph input, with its prepared shape) and adds what it sees.
  Status add_batch(const std::map<std::string, Tensor>& inputs);

  const std::vector<std::string>& tensors() const;
  const std::vector<ValueInfo>& inputs() const;  // the graph inputs, shapes resolved
  const AbsHistogram& histogram(size_t index) const;  // in tensors() order
  int64_t batches() const;

  // amax of each tensor, in tensors() order. A tensor that was always 0 gets a tiny positive
  // amax, so its scale stays valid.
  std::vector<float> amax(const CalibrationOptions& options) const;
  // The cache "TRT-<version>-<algorithm>" with scale = amax / 127 per tensor.
  CalibrationCache cache(const CalibrationOptions& options,
                         const std::string& trt_version = "8600") const;

  struct Impl;

 private:
  explicit Calibrator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The raw head convolutions of a YOLOv5 graph, in node order (s8, s16, s32): the Convs from
// which no other Conv can be reached. Their outputs are what QAT distillation
// matches and what a trimmed export ends with.
std::vector<std::string> head_conv_outputs(const Graph& graph);

// The graph cut after the head convolutions: their outputs become the graph outputs and the
// Detect post-processing goes. An error names the graph if it has no head convolution.
Expected<Graph> trim_at_heads(const Graph& graph);

}  // namespace qyolo
