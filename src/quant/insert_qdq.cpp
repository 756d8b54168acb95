// Q/DQ insertion in NVIDIA's two yolov5-qat placements, with shared quantizers, so tests and
// users can make QAT-style models from a float model without PyTorch.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "quant/quant_internal.h"
#include "qyolo/executor.h"
#include "qyolo/quant.h"

namespace qyolo {
namespace {

using quant::ConstantValues;

// An all-zero range still needs a positive scale; any tiny one quantizes zeros exactly.
constexpr float kMinAmax = 1e-8f;

// One quantized node input; slots with the same (merged) quantizer share a scale.
struct Slot {
  size_t node = 0;
  size_t input = 0;
  int quantizer = 0;
};

struct Plan {
  std::vector<Slot> slots;             // activations, in node and input order
  std::vector<size_t> weighted_convs;  // Convs whose weight gets a per-channel Q/DQ
  std::vector<int> parent;             // union-find over quantizers

  int make_quantizer() {
    parent.push_back(static_cast<int>(parent.size()));
    return parent.back();
  }
  int find(int q) {
    while (parent[q] != q) q = parent[q] = parent[parent[q]];
    return q;
  }
  void merge(int a, int b) {
    a = find(a), b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

// The Sigmoid input when `mul` is x * sigmoid(x) (either order), else "".
std::string silu_input(const Graph& graph, const std::unordered_map<std::string, size_t>& producer,
                       const Node& mul) {
  if (mul.op_type != "Mul" || mul.inputs.size() != 2) return "";
  for (int k = 0; k < 2; ++k) {
    auto it = producer.find(mul.inputs[k]);
    if (it == producer.end()) continue;
    const Node& sigmoid = graph.nodes[it->second];
    if (sigmoid.op_type == "Sigmoid" && sigmoid.inputs[0] == mul.inputs[1 - k])
      return mul.inputs[1 - k];
  }
  return "";
}

Plan make_plan(const Graph& graph, QdqPlacement placement) {
  Plan plan;
  const ConstantValues constants(graph);
  auto readers = consumers_by_value(graph);
  auto readers_of = [&](const std::string& value) {
    auto it = readers.find(value);
    return it == readers.end() ? std::vector<size_t>{} : it->second;
  };
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& out : graph.nodes[i].outputs) producer[out] = i;
  }
  auto is_activation = [&](const std::string& v) { return !v.empty() && !constants.contains(v); };

  // Every Conv quantizes its input with a quantizer of its own, and its weight per channel.
  std::unordered_map<size_t, int> conv_quantizer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    if (node.op_type != "Conv" || node.inputs.size() < 2) continue;
    if (is_activation(node.inputs[0])) conv_quantizer[i] = plan.make_quantizer();
    if (graph.find_initializer(node.inputs[1])) plan.weighted_convs.push_back(i);
  }
  auto conv_reading = [&](const std::string& value) -> int {
    for (size_t reader : readers_of(value)) {
      if (conv_quantizer.count(reader) && graph.nodes[reader].inputs[0] == value) {
        return conv_quantizer[reader];
      }
    }
    return -1;
  };

  std::vector<std::vector<Slot>> by_node(graph.nodes.size());
  for (const auto& [node, q] : conv_quantizer) by_node[node].push_back({node, 0, q});
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const bool residual_add = node.op_type == "Add" && node.inputs.size() == 2 &&
                              is_activation(node.inputs[0]) && is_activation(node.inputs[1]);
    if (residual_add) {
      // One quantizer for both inputs (QuantAdd); Option 1 shares it with the conv that
      // reads the block's input (rules.py: addop <- cv1.conv._input_quantizer).
      const int q = plan.make_quantizer();
      if (placement == QdqPlacement::kTensorRT) {
        int shared = conv_reading(node.inputs[0]);
        if (shared < 0) shared = conv_reading(node.inputs[1]);
        if (shared >= 0) plan.merge(q, shared);
      }
      by_node[i].push_back({i, 0, q});
      by_node[i].push_back({i, 1, q});
    }
    if (placement != QdqPlacement::kAllNodes) continue;
    if (!silu_input(graph, producer, node).empty()) {
      by_node[i].push_back({i, 0, plan.make_quantizer()});
      by_node[i].push_back({i, 1, plan.make_quantizer()});
    }
    if (node.op_type == "Concat" && conv_reading(node.outputs[0]) >= 0) {
      const int q = plan.make_quantizer();
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        if (is_activation(node.inputs[k])) by_node[i].push_back({i, k, q});
      }
    }
  }

  if (placement == QdqPlacement::kTensorRT) {
    // rules.py: the convs reading a Concat's output share one input quantizer with every
    // conv reading one of its inputs; likewise around a MaxPool whose first reader is a conv.
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      const Node& node = graph.nodes[i];
      if (node.op_type == "Concat") {
        int major = -1;
        for (size_t reader : readers_of(node.outputs[0])) {
          if (!conv_quantizer.count(reader) || graph.nodes[reader].inputs[0] != node.outputs[0])
            continue;
          if (major < 0) major = conv_quantizer[reader];
          plan.merge(major, conv_quantizer[reader]);
        }
        if (major < 0) continue;
        for (const auto& input : node.inputs) {
          for (size_t reader : readers_of(input)) {
            if (conv_quantizer.count(reader) && graph.nodes[reader].inputs[0] == input) {
              plan.merge(major, conv_quantizer[reader]);
            }
          }
        }
      } else if (node.op_type == "MaxPool") {
        const auto first = readers_of(node.outputs[0]);
        if (first.empty() || !conv_quantizer.count(first[0])) continue;
        const int major = conv_quantizer[first[0]];
        for (size_t reader : readers_of(node.inputs[0])) {
          if (conv_quantizer.count(reader)) plan.merge(major, conv_quantizer[reader]);
        }
      }
    }
  }
  for (auto& slots : by_node) {
    std::sort(slots.begin(), slots.end(),
              [](const Slot& a, const Slot& b) { return a.input < b.input; });
    plan.slots.insert(plan.slots.end(), slots.begin(), slots.end());
  }
  return plan;
}

std::string unique_name(const std::set<std::string>& taken, const std::string& wanted) {
  std::string name = wanted;
  for (int k = 1; taken.count(name); ++k) name = str_cat(wanted, "_", k);
  return name;
}

}  // namespace

std::vector<std::string> qdq_activation_tensors(const Graph& graph, QdqPlacement placement) {
  const Plan plan = make_plan(graph, placement);
  std::vector<std::string> tensors;
  std::set<std::string> seen;
  for (const Slot& slot : plan.slots) {
    const std::string& value = graph.nodes[slot.node].inputs[slot.input];
    if (seen.insert(value).second) tensors.push_back(value);
  }
  return tensors;
}

std::map<std::string, float> synthetic_ranges(const std::vector<std::string>& tensors) {
  std::map<std::string, float> ranges;
  for (const auto& name : tensors) {
    uint32_t hash = 2166136261u;  // FNV-1a
    for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
    ranges[name] = 0.5f + static_cast<float>(hash % 8001u) / 1000.0f;
  }
  return ranges;
}

Expected<std::map<std::string, float>> max_abs_ranges(
    const Graph& graph, const std::vector<std::map<std::string, Tensor>>& batches,
    const std::vector<std::string>& tensors) {
  QYOLO_ASSIGN_OR_RETURN(auto probe, quant::ActivationProbe::create(graph, tensors));
  std::map<std::string, float> ranges;
  for (const auto& name : tensors) ranges[name] = 0.0f;
  for (const auto& batch : batches) {
    QYOLO_ASSIGN_OR_RETURN(auto result, probe.run(batch));
    for (size_t k = 0; k < tensors.size(); ++k) {
      float& amax = ranges[tensors[k]];
      const Tensor& value = *result.values[k];
      const float* data = value.data<float>();
      for (int64_t i = 0; i < value.numel(); ++i) amax = std::max(amax, std::fabs(data[i]));
    }
  }
  return ranges;
}

Expected<Graph> upgrade_to_opset13(const Graph& graph) {
  Graph out = graph;
  if (graph.opset() >= 13) return out;
  out.opset_imports[""] = 13;
  out.ir_version = std::max<int64_t>(out.ir_version, 7);
  std::set<std::string> taken;
  for (const auto& [name, tensor] : out.initializers) taken.insert(name);
  for (const auto& node : out.nodes) taken.insert(node.outputs.begin(), node.outputs.end());
  for (const auto& input : out.inputs) taken.insert(input.name);
  for (auto& node : out.nodes) {
    const char* attribute = node.op_type == "Split"                                      ? "split"
                            : (node.op_type == "Squeeze" || node.op_type == "Unsqueeze") ? "axes"
                                                                                         : nullptr;
    if (!attribute || !node.has_attribute(attribute)) continue;
    // Opset 13 takes these lists as an int64 input instead of an attribute.
    const std::string name =
        unique_name(taken, str_cat(node.name.empty() ? node.op_type : node.name, "/", attribute));
    taken.insert(name);
    out.initializers[name] = Tensor::from_vector(node.get_ints(attribute));
    node.attributes.erase(attribute);
    node.inputs.resize(1);
    node.inputs.push_back(name);
  }
  return out;
}

Expected<Graph> insert_qdq(const Graph& graph, QdqPlacement placement,
                           const std::map<std::string, float>& activation_amax) {
  QYOLO_ASSIGN_OR_RETURN(Graph source, upgrade_to_opset13(graph));
  Plan plan = make_plan(source, placement);

  // A shared quantizer calibrates on everything it sees: its range is the largest.
  std::map<int, float> group_amax;
  for (const Slot& slot : plan.slots) {
    const std::string& value = source.nodes[slot.node].inputs[slot.input];
    auto it = activation_amax.find(value);
    if (it == activation_amax.end()) {
      return not_found("no range for '", value, "' (input ", slot.input, " of ",
                       source.nodes[slot.node].label(), ")");
    }
    if (!std::isfinite(it->second) || it->second < 0.0f) {
      return invalid_argument("range of '", value, "' is ", it->second, "; expected max|x| >= 0");
    }
    float& amax = group_amax[plan.find(slot.quantizer)];
    amax = std::max(amax, it->second);
  }

  std::set<std::string> taken;
  for (const auto& [name, tensor] : source.initializers) taken.insert(name);
  for (const auto& input : source.inputs) taken.insert(input.name);
  for (const auto& node : source.nodes) {
    taken.insert(node.outputs.begin(), node.outputs.end());
    taken.insert(node.name);
  }

  Graph out = source;
  out.nodes.clear();
  // Adds Q -> DQ in front of input `k` of `node`, returning the new input name.
  auto quantize = [&](Node& node, const std::string& base, size_t k, Tensor scale, int64_t axis) {
    Tensor zero_point(DType::kInt8, scale.shape());
    const std::string prefix = str_cat(base, "/input", k);
    const std::string scale_name = unique_name(taken, prefix + "/scale");
    taken.insert(scale_name);
    const std::string zero_name = unique_name(taken, prefix + "/zero_point");
    taken.insert(zero_name);
    out.initializers[scale_name] = std::move(scale);
    out.initializers[zero_name] = std::move(zero_point);
    std::string value = node.inputs[k];
    for (const char* op : {"QuantizeLinear", "DequantizeLinear"}) {
      Node qdq;
      qdq.name = unique_name(taken, prefix + "/" + op);
      taken.insert(qdq.name);
      qdq.op_type = op;
      qdq.inputs = {value, scale_name, zero_name};
      qdq.outputs = {unique_name(taken, qdq.name + "_output_0")};
      taken.insert(qdq.outputs[0]);
      if (axis >= 0) qdq.attributes["axis"] = Attribute::of_int(axis);
      value = qdq.outputs[0];
      out.nodes.push_back(std::move(qdq));
    }
    node.inputs[k] = value;
  };

  size_t next_slot = 0;
  std::set<size_t> weighted(plan.weighted_convs.begin(), plan.weighted_convs.end());
  for (size_t i = 0; i < source.nodes.size(); ++i) {
    Node node = source.nodes[i];
    const std::string base = node.name.empty() ? str_cat(node.op_type, "_", i) : node.name;
    for (; next_slot < plan.slots.size() && plan.slots[next_slot].node == i; ++next_slot) {
      const Slot& slot = plan.slots[next_slot];
      const float amax = std::max(group_amax[plan.find(slot.quantizer)], kMinAmax);
      quantize(node, base, slot.input, Tensor::from_vector(std::vector<float>{amax / 127.0f}, {}),
               -1);
    }
    if (weighted.count(i)) {
      const Tensor& weight = *source.find_initializer(node.inputs[1]);
      if (weight.dtype() != DType::kFloat32 || weight.rank() < 1) {
        return unsupported(node.label(), ": weight '", node.inputs[1], "' is ",
                           dtype_name(weight.dtype()), " ", shape_str(weight.shape()),
                           "; expected float32 with output channels first");
      }
      const int64_t channels = weight.shape()[0];
      const int64_t inner = weight.numel() / std::max<int64_t>(channels, 1);
      std::vector<float> scales(static_cast<size_t>(channels));
      for (int64_t c = 0; c < channels; ++c) {
        float amax = 0.0f;
        for (int64_t j = 0; j < inner; ++j)
          amax = std::max(amax, std::fabs(weight.data<float>()[c * inner + j]));
        scales[c] = std::max(amax, kMinAmax) / 127.0f;
      }
      quantize(node, base, 1, Tensor::from_vector(scales, {channels}), 0);
    }
    out.nodes.push_back(std::move(node));
  }
  return out;
}

}  // namespace qyolo
