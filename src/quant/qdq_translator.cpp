// The Q/DQ translator: NVIDIA's qdq_translator rules (cuDLA-samples export/qdq_translator at
// dffbd62, Deep-Learning-Accelerator-SW tools/qdq-translator v0.2.0) over qyolo's graph IR.
// docs/qdq_translator.md is the rule table; comments here say where a rule is surprising.
#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "quant/quant_internal.h"
#include "qyolo/quant.h"

namespace qyolo {
namespace {

using quant::ConstantValues;

constexpr double kUnitSigmoidScale = 1.0 / 127.0;
constexpr double kWeightScaleTolerance = 1e-3;

// Scales in insertion order. Setting a known tensor changes its value but keeps its place,
// as assigning to a Python dict does: "the first writer sets the position, the last the value".
class ScaleTable {
 public:
  bool has(const std::string& tensor) const { return index_.count(tensor) != 0; }
  double get(const std::string& tensor) const { return entries_[index_.at(tensor)].scale; }
  void set(const std::string& tensor, double scale, ScaleSource source) {
    auto [it, inserted] = index_.emplace(tensor, entries_.size());
    if (inserted) {
      entries_.push_back({tensor, scale, source});
      return;
    }
    TensorScale& entry = entries_[it->second];
    if (entry.scale != scale) entry.source = source;
    entry.scale = scale;
  }
  std::vector<TensorScale> take() { return std::move(entries_); }

 private:
  std::vector<TensorScale> entries_;
  std::unordered_map<std::string, size_t> index_;
};

std::string join_values(const std::vector<double>& values, size_t limit = 4) {
  std::string out;
  for (size_t i = 0; i < values.size() && i < limit; ++i)
    out += (i ? ", " : "") + str_cat(values[i]);
  if (values.size() > limit) out += str_cat(", ... (", values.size(), " values)");
  return out;
}

// One Q/DQ pair, read and checked.
struct QdqPair {
  size_t quantize = 0, dequantize = 0;
  std::string tensor;          // the value quantized
  std::vector<double> scales;  // one, or one per channel
  int64_t axis = 1;
};

class Translator {
 public:
  Translator(const Graph& qat, const TranslateOptions& options) : g_(qat), options_(options) {}

  Expected<Translation> run();

 private:
  Status rename_outputs_after_nodes();
  std::vector<size_t> consumers(const std::string& value, const std::vector<size_t>& order) const;
  Expected<std::vector<double>> constant_floats(const Node& node, size_t input,
                                                const char* what) const;
  Status check_zero_point(const Node& node) const;
  Expected<QdqPair> read_pair(size_t quantize, const std::vector<size_t>& order) const;
  Status check_weight_scales(const Node& consumer, const std::string& weight,
                             const QdqPair& pair) const;
  void clamp_weight(const std::string& weight, const QdqPair& pair);
  Status extract(const std::vector<size_t>& order);
  std::set<std::string> inference_ops() const;
  void forward(const std::vector<size_t>& order, const std::set<std::string>& ops);
  void backward(const std::vector<size_t>& order, const std::set<std::string>& ops);
  void fallback(const std::vector<size_t>& order);
  std::string unscaled_reason(const Node* producer, bool is_output, bool feeds_silu) const;

  bool known(const std::string& tensor) const { return scales_.has(tensor); }
  double scale_of(const std::string& tensor) const { return scales_.get(tensor); }
  bool shipped_rules() const { return options_.sigmoid_scale == SigmoidScale::kMulOutput; }
  bool is_silu_mul(const Node& mul) const;

  Graph g_;
  TranslateOptions options_;
  ScaleTable scales_;
  std::vector<bool> removed_;
  Translation result_;
  std::unordered_set<std::string> sigmoid_skip_;  // Sigmoid outputs the backward rule leaves
  std::unordered_map<std::string, size_t> producer_;
};

// Mul(x, Sigmoid(x)) in either order.
bool Translator::is_silu_mul(const Node& mul) const {
  if (mul.op_type != "Mul" || mul.inputs.size() != 2) return false;
  for (int k = 0; k < 2; ++k) {
    auto it = producer_.find(mul.inputs[k]);
    if (it == producer_.end()) continue;
    const Node& sigmoid = g_.nodes[it->second];
    if (sigmoid.op_type == "Sigmoid" && !sigmoid.inputs.empty() &&
        sigmoid.inputs[0] == mul.inputs[1 - k]) {
      return true;
    }
  }
  return false;
}

Status Translator::rename_outputs_after_nodes() {
  std::unordered_map<std::string, std::string> renames;
  for (const auto& node : g_.nodes) {
    if (node.name.empty()) continue;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      if (node.outputs[k].empty()) continue;
      renames[node.outputs[k]] = k == 0 ? node.name : str_cat(node.name, "_", k);
    }
  }
  std::set<std::string> taken;
  for (const auto& input : g_.inputs) taken.insert(input.name);
  for (const auto& [name, tensor] : g_.initializers) taken.insert(name);
  for (const auto& [from, to] : renames) {
    if (taken.count(to) && !renames.count(to)) {
      return invalid_argument("--rename-node-outputs: '", to, "' would name both '", from,
                              "' and an input or initializer");
    }
  }
  std::set<std::string> targets;
  for (const auto& [from, to] : renames) {
    if (!targets.insert(to).second) {
      return invalid_argument("--rename-node-outputs: two node outputs would be named '", to, "'");
    }
  }
  auto apply = [&](std::string& name) {
    auto it = renames.find(name);
    if (it != renames.end()) name = it->second;
  };
  for (auto& node : g_.nodes) {
    for (auto& name : node.inputs) apply(name);
    for (auto& name : node.outputs) apply(name);
  }
  for (auto& output : g_.outputs) apply(output.name);
  for (auto& info : g_.value_infos) apply(info.name);
  return Status::ok();
}

// The nodes of `order` reading `value`, once each, in that order.
std::vector<size_t> Translator::consumers(const std::string& value,
                                          const std::vector<size_t>& order) const {
  std::vector<size_t> out;
  for (size_t i : order) {
    if (removed_[i]) continue;
    const auto& inputs = g_.nodes[i].inputs;
    if (std::find(inputs.begin(), inputs.end(), value) != inputs.end()) out.push_back(i);
  }
  return out;
}

Expected<std::vector<double>> Translator::constant_floats(const Node& node, size_t input,
                                                          const char* what) const {
  if (node.inputs.size() <= input || node.inputs[input].empty()) {
    return invalid_argument(node.label(), ": has no ", what, " input");
  }
  const Tensor* t = ConstantValues(g_).find(node.inputs[input]);
  if (!t) {
    return invalid_argument(node.label(), ": ", what, " '", node.inputs[input],
                            "' is not a constant (an initializer or a Constant node)");
  }
  return t->to_double();
}

Status Translator::check_zero_point(const Node& node) const {
  const bool is_quantize = node.op_type == "QuantizeLinear";
  if (node.inputs.size() < 3 || node.inputs[2].empty()) {
    if (is_quantize) {
      return invalid_argument(node.label(),
                              ": has no zero point, so it quantizes to uint8; symmetric INT8 "
                              "needs an int8 zero point of 0");
    }
    return Status::ok();
  }
  const Tensor* zp = ConstantValues(g_).find(node.inputs[2]);
  if (!zp) {
    return invalid_argument(node.label(), ": zero point '", node.inputs[2], "' is not a constant");
  }
  if (zp->dtype() != DType::kInt8) {
    return invalid_argument(node.label(), ": zero point '", node.inputs[2], "' is ",
                            dtype_name(zp->dtype()), "; symmetric INT8 needs int8 zeros");
  }
  const auto values = zp->to_double();
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] != 0.0) {
      return invalid_argument(node.label(), ": zero point '", node.inputs[2], "' is ", values[i],
                              values.size() > 1 ? str_cat(" at channel ", i) : "",
                              "; symmetric INT8 needs 0");
    }
  }
  return Status::ok();
}

Expected<QdqPair> Translator::read_pair(size_t quantize, const std::vector<size_t>& order) const {
  const Node& q = g_.nodes[quantize];
  QdqPair pair;
  pair.quantize = quantize;
  if (q.inputs.empty() || q.inputs[0].empty() || q.outputs.empty()) {
    return invalid_argument(q.label(), ": has no input or output");
  }
  pair.tensor = q.inputs[0];
  QYOLO_ASSIGN_OR_RETURN(pair.scales, constant_floats(q, 1, "scale"));
  for (double s : pair.scales) {
    if (!std::isfinite(s) || s <= 0.0) {
      return invalid_argument(q.label(), ": scale '", q.inputs[1], "' holds ", s,
                              "; scales must be positive and finite");
    }
  }
  QYOLO_RETURN_IF_ERROR(check_zero_point(q));
  pair.axis = q.get_int("axis", 1);

  const auto readers = consumers(q.outputs[0], order);
  if (readers.size() != 1 || g_.nodes[readers[0]].op_type != "DequantizeLinear") {
    std::string what =
        readers.empty() ? std::string("nothing")
                        : str_cat(readers.size(), " nodes, first ", g_.nodes[readers[0]].label());
    return invalid_argument(q.label(),
                            ": its output must feed exactly one DequantizeLinear, "
                            "but feeds ",
                            what);
  }
  pair.dequantize = readers[0];
  const Node& dq = g_.nodes[pair.dequantize];
  QYOLO_RETURN_IF_ERROR(check_zero_point(dq));
  QYOLO_ASSIGN_OR_RETURN(auto dq_scales, constant_floats(dq, 1, "scale"));
  if (dq_scales != pair.scales) {
    return invalid_argument(q.label(), " and ", dq.label(), " must share one scale, but have ",
                            join_values(pair.scales), " and ", join_values(dq_scales));
  }
  if (pair.scales.size() > 1 && dq.get_int("axis", 1) != pair.axis) {
    return invalid_argument(q.label(), " and ", dq.label(), " quantize along different axes (",
                            pair.axis, " and ", dq.get_int("axis", 1), ")");
  }
  if (dq.outputs.empty() || dq.outputs[0].empty())
    return invalid_argument(dq.label(), ": has no output");
  return pair;
}

// NVIDIA's check for max-calibrated weights: scale[k] = max|w[k, ...]| / 127 within 1e-3,
// k over the first axis (the last for MatMul, which it transposes).
Status Translator::check_weight_scales(const Node& consumer, const std::string& weight,
                                       const QdqPair& pair) const {
  const Tensor* w = ConstantValues(g_).find(weight);
  if (!w || w->rank() == 0) return Status::ok();
  const auto values = w->to_double();
  const bool transposed = consumer.op_type == "MatMul";
  const int64_t channels = transposed ? w->shape().back() : w->shape()[0];
  if (channels <= 0) return Status::ok();
  std::vector<float> amax(static_cast<size_t>(channels), 0.0f);
  const int64_t inner = w->numel() / channels;
  for (int64_t i = 0; i < w->numel(); ++i) {
    const int64_t k = transposed ? i % channels : i / inner;
    amax[k] = std::max(amax[k], std::fabs(static_cast<float>(values[i])));
  }
  if (pair.scales.size() != 1 && static_cast<int64_t>(pair.scales.size()) != channels) {
    return invalid_argument(consumer.label(), ": weight '", weight, "' has ", channels,
                            " channels but its QuantizeLinear has ", pair.scales.size(), " scales");
  }
  for (int64_t k = 0; k < channels; ++k) {
    const double expected = amax[k] / 127.0f;
    const double actual = pair.scales.size() == 1 ? pair.scales[0] : pair.scales[k];
    if (std::fabs(expected - actual) > kWeightScaleTolerance + 1e-5 * std::fabs(actual)) {
      return invalid_argument(consumer.label(), ": weight '", weight, "' channel ", k,
                              " has scale ", actual, " but max|w|/127 = ", expected,
                              " (use --calibration-type hist for weights not max-calibrated)");
    }
  }
  return Status::ok();
}

// Clamps a weight to the range its QAT quantizer allowed, +-127 * scale per channel.
void Translator::clamp_weight(const std::string& weight, const QdqPair& pair) {
  Tensor* w = nullptr;
  auto it = g_.initializers.find(weight);
  if (it != g_.initializers.end()) w = &it->second;
  for (auto& node : g_.nodes) {
    if (!w && node.op_type == "Constant" && !node.outputs.empty() && node.outputs[0] == weight &&
        node.attributes.count("value")) {
      w = &node.attributes.at("value").t;
    }
  }
  if (!w || w->dtype() != DType::kFloat32) return;
  const int64_t rank = w->rank();
  int64_t axis = pair.axis < 0 ? pair.axis + rank : pair.axis;
  int64_t inner = 1, dim = 1;
  if (pair.scales.size() > 1 && axis >= 0 && axis < rank) {
    dim = w->shape()[axis];
    for (int64_t d = axis + 1; d < rank; ++d) inner *= w->shape()[d];
  }
  float* data = w->data<float>();
  for (int64_t i = 0; i < w->numel(); ++i) {
    const size_t c = pair.scales.size() > 1 ? static_cast<size_t>((i / inner) % dim) : 0;
    const float limit = static_cast<float>(127.0 * pair.scales[c]);
    data[i] = std::clamp(data[i], -limit, limit);
  }
}

// Records each Q/DQ pair's scale and reconnects the quantized value to the DQ's readers.
Status Translator::extract(const std::vector<size_t>& order) {
  for (size_t index : order) {
    if (g_.nodes[index].op_type != "QuantizeLinear") continue;
    QYOLO_ASSIGN_OR_RETURN(QdqPair pair, read_pair(index, order));
    const std::string dq_output = g_.nodes[pair.dequantize].outputs[0];
    const bool is_weight = ConstantValues(g_).contains(pair.tensor);
    if (is_weight) {
      ++result_.weight_qdq;
    } else {
      if (pair.scales.size() != 1) {
        return unsupported(g_.nodes[index].label(), ": activation '", pair.tensor, "' has ",
                           pair.scales.size(), " scales; activations are quantized per tensor");
      }
      ++result_.activation_qdq;
      scales_.set(pair.tensor, pair.scales[0], ScaleSource::kQdq);
    }
    if (g_.is_output(dq_output) && pair.scales.size() == 1) {
      scales_.set(dq_output, pair.scales[0], ScaleSource::kGraphOutput);
    }
    removed_[index] = removed_[pair.dequantize] = true;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (removed_[i]) continue;
      Node& node = g_.nodes[i];
      for (auto& input : node.inputs) {
        if (input != dq_output) continue;
        if (is_weight && options_.check_weight_scales) {
          QYOLO_RETURN_IF_ERROR(check_weight_scales(node, pair.tensor, pair));
        }
        input = pair.tensor;
      }
    }
    if (is_weight && options_.infer_all) clamp_weight(pair.tensor, pair);
    if (g_.is_output(dq_output)) {
      // The graph output keeps its name: the quantized value takes it (as graphsurgeon
      // renames the tensor), and its producer now writes the output directly.
      if (auto it = g_.initializers.find(pair.tensor); it != g_.initializers.end()) {
        g_.initializers[dq_output] = it->second;
      }
      quant::rename_value(g_, pair.tensor, dq_output);
    }
  }
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    if (!removed_[i] && g_.nodes[i].op_type == "DequantizeLinear") {
      return unsupported(g_.nodes[i].label(),
                         ": is not fed by a QuantizeLinear "
                         "(pre-quantized int8 weights are not supported)");
    }
  }
  return Status::ok();
}

std::set<std::string> Translator::inference_ops() const {
  std::set<std::string> ops = {"MaxPool",   "Flatten", "Relu",    "Pad",
                               "Transpose", "Reshape", "Squeeze", "Sigmoid"};
  ops.insert(options_.extra_ops.begin(), options_.extra_ops.end());
  if (options_.infer_average_pool_scales)
    ops.insert({"AveragePool", "GlobalAveragePool", "ReduceMean"});
  if (options_.infer_concat_scales || options_.infer_all) ops.insert("Concat");
  if (options_.infer_mul_scales || options_.infer_all) ops.insert("Mul");
  if (options_.infer_all) ops.insert({"Add", "Resize", "Split", "Slice"});
  return ops;
}

void Translator::forward(const std::vector<size_t>& order, const std::set<std::string>& ops) {
  for (size_t i : order) {
    const Node& node = g_.nodes[i];
    if (!ops.count(node.op_type) || node.inputs.empty() || node.outputs.empty()) continue;
    const std::string& in = node.inputs[0];
    const std::string& out = node.outputs[0];
    if (node.op_type == "Concat" && shipped_rules() && known(out) &&
        std::none_of(node.inputs.begin(), node.inputs.end(),
                     [&](const std::string& v) { return known(v); })) {
      // The shipped cache's rules: a Concat with no input scale hands its own to its inputs
      // already in the forward pass.
      for (const auto& input : node.inputs) {
        if (!input.empty() && !known(input))
          scales_.set(input, scale_of(out), ScaleSource::kForward);
      }
    } else if (node.op_type == "Concat") {
      // The largest known input scale, even over a scale the output got from its own Q/DQ.
      bool any = false;
      double largest = 0.0;
      for (const auto& input : node.inputs) {
        if (!known(input) || (any && scale_of(input) < largest)) continue;
        largest = scale_of(input);
        any = true;
      }
      if (any) scales_.set(out, largest, ScaleSource::kForward);
    } else if (node.op_type == "Sigmoid") {
      // A SiLU's Sigmoid: its output is in (0, 1), so scale 1/127, and the backward rule must
      // not turn that into an input scale. Only the first consumer is looked at.
      if (known(out) || !ops.count("Mul") || shipped_rules()) continue;
      const auto readers = consumers(out, order);
      if (readers.empty() || g_.nodes[readers[0]].op_type != "Mul") continue;
      sigmoid_skip_.insert(out);
      scales_.set(out, kUnitSigmoidScale, ScaleSource::kForward);
    } else {
      if (known(in) && !known(out)) scales_.set(out, scale_of(in), ScaleSource::kForward);
      if (node.op_type == "Split" && known(in)) {
        for (const auto& output : node.outputs) {
          if (!output.empty() && !known(output))
            scales_.set(output, scale_of(in), ScaleSource::kForward);
        }
      }
    }
  }
}

void Translator::backward(const std::vector<size_t>& order, const std::set<std::string>& ops) {
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Node& node = g_.nodes[*it];
    if (!ops.count(node.op_type) || node.inputs.empty() || node.outputs.empty()) continue;
    const std::string& in = node.inputs[0];
    const std::string& out = node.outputs[0];
    if (!known(out) || known(in)) continue;
    const double s_out = scale_of(out);
    if (node.op_type == "Sigmoid") {
      if (sigmoid_skip_.count(out)) continue;
      // Input range from the output's: x = ln(y / (1 - y)) with y = 127 * s_out.
      const double y = s_out * 127.0;
      if (y >= 1.0 || y <= 0.5) {
        result_.warnings.push_back(
            str_cat(node.label(), ": output scale ", s_out, " gives y = 127 * scale = ", y,
                    y >= 1.0 ? " >= 1, where ln(y / (1 - y)) is undefined"
                             : " <= 0.5, where ln(y / (1 - y)) is not a positive scale",
                    "; input '", in, "' is left without a scale"));
        continue;
      }
      scales_.set(in, std::log(y / (1.0 - y)) / 127.0, ScaleSource::kBackward);
    } else if (node.op_type == "Concat") {
      for (const auto& input : node.inputs) {
        if (!input.empty() && !known(input)) scales_.set(input, s_out, ScaleSource::kBackward);
      }
    } else if (node.op_type == "Mul" && shipped_rules() && is_silu_mul(node)) {
      // The shipped cache's rules: both SiLU inputs (the Conv output, then the Sigmoid output)
      // take the Mul output's scale.
      for (const auto& input : node.inputs) {
        if (!known(input)) scales_.set(input, s_out, ScaleSource::kBackward);
      }
    } else if (node.op_type == "Mul") {
      // Solves s_out = 127 * s_in0 * s_in1 for input 0; with a SiLU's 1/127 Sigmoid scale that
      // gives input 0 the output's scale. Nothing when input 1 is unknown too.
      if (node.inputs.size() < 2 || !known(node.inputs[1])) continue;
      scales_.set(in, s_out / scale_of(node.inputs[1]) / 127.0, ScaleSource::kBackward);
    } else {
      scales_.set(in, s_out, ScaleSource::kBackward);
    }
  }
}

std::string Translator::unscaled_reason(const Node* producer, bool is_output,
                                        bool feeds_silu) const {
  if (!producer) return "graph input without a Q/DQ";
  if (feeds_silu && !options_.infer_mul_scales && !options_.infer_all) {
    return str_cat(producer->op_type,
                   " output inside a SiLU without a Q/DQ; --infer-mul-scales infers SiLU scales");
  }
  const std::string& op = producer->op_type;
  if (op == "Concat" && !options_.infer_concat_scales && !options_.infer_all) {
    return "Concat output without a Q/DQ; --infer-concat-scales gives it the largest input scale";
  }
  if (op == "Mul" && !options_.infer_mul_scales && !options_.infer_all) {
    return "Mul output without a Q/DQ; --infer-mul-scales carries scales through Mul";
  }
  if ((op == "Add" || op == "Resize" || op == "Split" || op == "Slice") && !options_.infer_all) {
    return str_cat(op, " output without a Q/DQ; NVIDIA's rules carry no scale through ", op,
                   " unless it is named in --addtl-ops-to-infer-adjacent-scales (or --infer-all)");
  }
  if (is_output) return "graph output without a Q/DQ";
  return str_cat(op, " output without a Q/DQ, and no rule carries a scale to it");
}

// FP16 fallback: the consumers of each value left without a scale. NVIDIA's list looks at
// graph inputs and each node's first output only, and keeps repeats; --infer-all lists the
// consumers of every output, once each.
void Translator::fallback(const std::vector<size_t>& order) {
  std::vector<size_t> nodes;
  for (size_t i : order) {
    if (g_.nodes[i].op_type != "Constant") nodes.push_back(i);  // constants become initializers
  }
  std::unordered_map<std::string, std::vector<size_t>> readers;  // one entry per input slot
  for (size_t i : nodes) {
    for (const auto& input : g_.nodes[i].inputs) {
      if (!input.empty()) readers[input].push_back(i);
    }
  }
  auto readers_of = [&](const std::string& value) {
    auto it = readers.find(value);
    return it == readers.end() ? std::vector<size_t>{} : it->second;
  };
  std::vector<std::pair<const Node*, std::string>> values;
  for (const auto& input : g_.inputs) values.push_back({nullptr, input.name});
  for (size_t i : nodes) {
    for (const auto& output : g_.nodes[i].outputs) values.push_back({&g_.nodes[i], output});
  }

  std::unordered_set<std::string> unary;
  std::unordered_set<std::string> listed;
  for (const auto& [producer, value] : values) {
    const bool first_output =
        !producer || (!producer->outputs.empty() && producer->outputs[0] == value);
    if (value.empty() || scales_.has(value)) continue;
    const auto users = readers_of(value);
    if (first_output && options_.add_unary_ew_scales_for_dla && producer &&
        producer->op_type == "Conv" && users.size() == 1) {
      // Conv + Add fuse on the DLA when the Add's other input has a real scale; the Conv
      // output then needs a placeholder scale of 1. The "other" input is always input 1.
      const Node& add = g_.nodes[users[0]];
      if (add.op_type == "Add" && add.inputs.size() == 2 && !unary.count(add.inputs[1])) {
        unary.insert(value);
        scales_.set(value, 1.0, ScaleSource::kUnaryDla);
        continue;
      }
    }
    UnscaledTensor report{value,
                          producer ? producer->name : "",
                          producer ? producer->op_type : "",
                          {},
                          unscaled_reason(producer, g_.is_output(value),
                                          std::any_of(users.begin(), users.end(), [&](size_t u) {
                                            return is_silu_mul(g_.nodes[u]);
                                          }))};
    for (size_t user : users) {
      const std::string& name = g_.nodes[user].name;
      if (std::find(report.consumers.begin(), report.consumers.end(), name) ==
          report.consumers.end()) {
        report.consumers.push_back(name);
      }
      if (options_.infer_all) {
        if (listed.insert(name).second) result_.fp16_nodes.push_back(name);
      } else if (first_output) {
        result_.fp16_nodes.push_back(name);
      }
    }
    result_.unscaled.push_back(std::move(report));
  }
}

Expected<Translation> Translator::run() {
  if (options_.rename_node_outputs) QYOLO_RETURN_IF_ERROR(rename_outputs_after_nodes());
  quant::remove_dead_code(g_);
  removed_.assign(g_.nodes.size(), false);
  std::vector<size_t> file_order(g_.nodes.size());
  for (size_t i = 0; i < file_order.size(); ++i) file_order[i] = i;
  // Extraction walks graphsurgeon's order of the graph with its Q/DQ nodes.
  const std::vector<size_t> qdq_order = quant::depth_order(g_, file_order);
  QYOLO_RETURN_IF_ERROR(extract(qdq_order));

  // Remove the Q/DQ nodes and whatever only fed them, keeping each survivor's rank in the
  // extraction order: the inference passes walk graphsurgeon's order of the graph without
  // Q/DQ, ties broken by that rank.
  std::vector<size_t> rank(g_.nodes.size());
  for (size_t r = 0; r < qdq_order.size(); ++r) rank[qdq_order[r]] = r;
  std::vector<Node> kept;
  std::vector<size_t> kept_rank;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    if (removed_[i]) continue;
    kept.push_back(std::move(g_.nodes[i]));
    kept_rank.push_back(rank[i]);
  }
  g_.nodes = std::move(kept);
  const std::vector<bool> survived = quant::remove_dead_code(g_);
  std::vector<size_t> survivor_rank;
  for (size_t i = 0; i < survived.size(); ++i) {
    if (survived[i]) survivor_rank.push_back(kept_rank[i]);
  }
  kept_rank = std::move(survivor_rank);
  removed_.assign(g_.nodes.size(), false);
  std::vector<size_t> by_rank(g_.nodes.size());
  for (size_t i = 0; i < by_rank.size(); ++i) by_rank[i] = i;
  std::stable_sort(by_rank.begin(), by_rank.end(),
                   [&](size_t a, size_t b) { return kept_rank[a] < kept_rank[b]; });
  const std::vector<size_t> order = quant::depth_order(g_, by_rank);

  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    for (const auto& out : g_.nodes[i].outputs) producer_[out] = i;
  }
  const auto ops = inference_ops();
  forward(order, ops);
  backward(order, ops);
  fallback(order);

  result_.scales = scales_.take();
  for (const auto& entry : result_.scales) {
    if (entry.source != ScaleSource::kQdq && entry.source != ScaleSource::kGraphOutput)
      ++result_.inferred;
  }
  result_.graph = std::move(g_);
  return std::move(result_);
}

}  // namespace

Expected<Translation> translate_qdq(const Graph& qat, const TranslateOptions& options) {
  return Translator(qat, options).run();
}

}  // namespace qyolo
