#include <algorithm>
#include <set>

#include "qyolo/quant.h"
#include "quant/quant_internal.h"

namespace qyolo::quant {

ConstantValues::ConstantValues(const Graph& graph) : graph_(graph) {
  for (const auto& node : graph.nodes) {
    if (node.op_type != "Constant" || node.outputs.empty()) continue;
    auto it = node.attributes.find("value");
    if (it != node.attributes.end() && it->second.kind == Attribute::Kind::kTensor) {
      from_nodes_[node.outputs[0]] = &it->second.t;
    }
  }
}

const Tensor* ConstantValues::find(const std::string& name) const {
  if (const Tensor* t = graph_.find_initializer(name)) return t;
  auto it = from_nodes_.find(name);
  return it == from_nodes_.end() ? nullptr : it->second;
}

std::vector<size_t> depth_order(const Graph& graph, const std::vector<size_t>& current) {
  std::unordered_map<std::string, size_t> producer;
  for (size_t i : current) {
    for (const auto& out : graph.nodes[i].outputs) {
      if (!out.empty()) producer[out] = i;
    }
  }
  // Depth by memoised depth-first search. graphsurgeon records each node when its depth is
  // known, so ancestors come before it; for a topologically sorted `current` that record
  // order is `current` itself, and the stable sort below breaks ties by it.
  std::unordered_map<size_t, int64_t> depth;
  std::vector<size_t> record;
  for (size_t root : current) {
    if (depth.count(root)) continue;
    std::vector<std::pair<size_t, size_t>> stack{{root, 0}};  // node, next input to visit
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const auto& inputs = graph.nodes[node].inputs;
      bool descended = false;
      while (next < inputs.size()) {
        auto it = producer.find(inputs[next++]);
        if (it != producer.end() && !depth.count(it->second) && it->second != node) {
          stack.push_back({it->second, 0});
          descended = true;
          break;
        }
      }
      if (descended) continue;
      int64_t level = 0;
      for (const auto& input : inputs) {
        auto it = producer.find(input);
        if (it != producer.end() && depth.count(it->second)) {
          level = std::max(level, depth[it->second] + 1);
        }
      }
      depth[node] = level;
      record.push_back(node);
      stack.pop_back();
    }
  }
  std::stable_sort(record.begin(), record.end(),
                   [&](size_t a, size_t b) { return depth[a] < depth[b]; });
  return record;
}

void rename_value(Graph& graph, const std::string& from, const std::string& to) {
  if (from == to) return;
  for (auto& node : graph.nodes) {
    for (auto& name : node.inputs) {
      if (name == from) name = to;
    }
    for (auto& name : node.outputs) {
      if (name == from) name = to;
    }
  }
  for (auto& input : graph.inputs) {
    if (input.name == from) input.name = to;
  }
  for (auto& output : graph.outputs) {
    if (output.name == from) output.name = to;
  }
  for (auto& info : graph.value_infos) {
    if (info.name == from) info.name = to;
  }
}

std::vector<bool> remove_dead_code(Graph& graph) {
  std::set<std::string> needed;
  for (const auto& output : graph.outputs) needed.insert(output.name);
  std::vector<bool> keep(graph.nodes.size(), false);
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    const Node& node = graph.nodes[i];
    keep[i] = std::any_of(node.outputs.begin(), node.outputs.end(),
                          [&](const std::string& o) { return !o.empty() && needed.count(o); });
    if (keep[i]) needed.insert(node.inputs.begin(), node.inputs.end());
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (keep[i]) kept.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(kept);
  for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
    it = needed.count(it->first) ? std::next(it) : graph.initializers.erase(it);
  }
  std::set<std::string> values;
  for (const auto& node : graph.nodes) values.insert(node.outputs.begin(), node.outputs.end());
  std::erase_if(graph.value_infos, [&](const ValueInfo& info) {
    return !values.count(info.name) && !graph.find_input(info.name);
  });
  return keep;
}

}  // namespace qyolo::quant

namespace qyolo {

std::vector<std::string> head_conv_outputs(const Graph& graph) {
  // A Conv is a head when no Conv lies downstream of it: walk the nodes backwards, noting
  // which values reach a Conv.
  const auto readers = consumers_by_value(graph);
  std::vector<bool> reaches_conv(graph.nodes.size(), false);
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    for (const auto& out : graph.nodes[i].outputs) {
      auto it = readers.find(out);
      if (it == readers.end()) continue;
      for (size_t r : it->second) {
        if (graph.nodes[r].op_type == "Conv" || reaches_conv[r]) reaches_conv[i] = true;
      }
    }
  }
  std::vector<std::string> heads;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (graph.nodes[i].op_type == "Conv" && !reaches_conv[i])
      heads.push_back(graph.nodes[i].outputs[0]);
  }
  return heads;
}

Expected<Graph> trim_at_heads(const Graph& graph) {
  const std::vector<std::string> heads = head_conv_outputs(graph);
  if (heads.empty()) return not_found("graph '", graph.name, "' has no head convolution");
  std::set<std::string> needed(heads.begin(), heads.end());
  std::vector<bool> keep(graph.nodes.size(), false);
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    const Node& node = graph.nodes[i];
    for (const auto& out : node.outputs) {
      if (needed.count(out)) keep[i] = true;
    }
    if (keep[i]) needed.insert(node.inputs.begin(), node.inputs.end());
  }
  Graph out = graph;
  out.nodes.clear();
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (keep[i]) out.nodes.push_back(graph.nodes[i]);
  }
  for (auto it = out.initializers.begin(); it != out.initializers.end();) {
    it = needed.count(it->first) ? std::next(it) : out.initializers.erase(it);
  }
  out.value_infos.clear();
  out.outputs.clear();
  QYOLO_ASSIGN_OR_RETURN(ShapeInfo info, infer_shapes(out));
  for (const auto& head : heads) {
    const ValueInfo* value = info.find(head);
    if (!value) return internal_error("no shape for head output '", head, "'");
    out.outputs.push_back(*value);
  }
  return out;
}

}  // namespace qyolo
