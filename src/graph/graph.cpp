#include "qyolo/graph.h"

#include <algorithm>
#include <queue>
#include <set>

#include "qyolo/ops.h"

namespace qyolo {

Attribute Attribute::of_int(int64_t value) {
  Attribute a;
  a.kind = Kind::kInt;
  a.i = value;
  return a;
}
Attribute Attribute::of_float(float value) {
  Attribute a;
  a.kind = Kind::kFloat;
  a.f = value;
  return a;
}
Attribute Attribute::of_string(std::string value) {
  Attribute a;
  a.kind = Kind::kString;
  a.s = std::move(value);
  return a;
}
Attribute Attribute::of_ints(std::vector<int64_t> values) {
  Attribute a;
  a.kind = Kind::kInts;
  a.ints = std::move(values);
  return a;
}
Attribute Attribute::of_floats(std::vector<float> values) {
  Attribute a;
  a.kind = Kind::kFloats;
  a.floats = std::move(values);
  return a;
}
Attribute Attribute::of_tensor(Tensor value) {
  Attribute a;
  a.kind = Kind::kTensor;
  a.t = std::move(value);
  return a;
}

bool Attribute::operator==(const Attribute& o) const {
  if (kind != o.kind) return false;
  switch (kind) {
    case Kind::kFloat:
      return std::memcmp(&f, &o.f, sizeof(f)) == 0;
    case Kind::kInt:
      return i == o.i;
    case Kind::kString:
      return s == o.s;
    case Kind::kTensor:
      return t == o.t;
    case Kind::kFloats:
      return floats.size() == o.floats.size() &&
             (floats.empty() ||
              std::memcmp(floats.data(), o.floats.data(), floats.size() * sizeof(float)) == 0);
    case Kind::kInts:
      return ints == o.ints;
    case Kind::kStrings:
      return strings == o.strings;
    case Kind::kUndefined:
      return true;
  }
  return false;
}

int64_t Node::get_int(const std::string& key, int64_t fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.i;
}
float Node::get_float(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.f;
}
std::string Node::get_string(const std::string& key, const std::string& fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.s;
}
std::vector<int64_t> Node::get_ints(const std::string& key, std::vector<int64_t> fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.ints;
}
std::string Node::label() const { return str_cat(op_type, " '", name, "'"); }

bool Node::operator==(const Node& o) const {
  return name == o.name && op_type == o.op_type && domain == o.domain && inputs == o.inputs &&
         outputs == o.outputs && attributes == o.attributes;
}

bool ValueInfo::operator==(const ValueInfo& o) const {
  return name == o.name && dtype == o.dtype && has_shape == o.has_shape && shape == o.shape &&
         dim_params == o.dim_params;
}

int64_t Graph::opset() const {
  auto it = opset_imports.find("");
  return it == opset_imports.end() ? 0 : it->second;
}

const Tensor* Graph::find_initializer(const std::string& value) const {
  auto it = initializers.find(value);
  return it == initializers.end() ? nullptr : &it->second;
}

const ValueInfo* Graph::find_input(const std::string& value) const {
  for (const auto& input : inputs) {
    if (input.name == value) return &input;
  }
  return nullptr;
}

bool Graph::is_output(const std::string& value) const {
  return std::any_of(outputs.begin(), outputs.end(),
                     [&](const ValueInfo& o) { return o.name == value; });
}

bool Graph::operator==(const Graph& o) const {
  return name == o.name && ir_version == o.ir_version && opset_imports == o.opset_imports &&
         producer_name == o.producer_name && producer_version == o.producer_version &&
         inputs == o.inputs && outputs == o.outputs && value_infos == o.value_infos &&
         nodes == o.nodes && initializers == o.initializers;
}

std::unordered_map<std::string, std::vector<size_t>> consumers_by_value(const Graph& graph) {
  std::unordered_map<std::string, std::vector<size_t>> consumers;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& input : graph.nodes[i].inputs) {
      if (input.empty()) continue;
      auto& list = consumers[input];
      if (list.empty() || list.back() != i) list.push_back(i);
    }
  }
  return consumers;
}

Status topological_sort(Graph& graph) {
  const size_t n = graph.nodes.size();
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < n; ++i) {
    for (const auto& output : graph.nodes[i].outputs) {
      if (output.empty()) continue;
      if (!producer.emplace(output, i).second) {
        return invalid_argument("value '", output, "' is produced by both ",
                                graph.nodes[producer[output]].label(), " and ",
                                graph.nodes[i].label());
      }
    }
  }
  std::set<std::string> available;
  for (const auto& input : graph.inputs) available.insert(input.name);
  for (const auto& [name, tensor] : graph.initializers) available.insert(name);

  std::vector<int> pending(n, 0);
  std::vector<std::vector<size_t>> dependents(n);
  for (size_t i = 0; i < n; ++i) {
    std::set<size_t> deps;
    for (const auto& input : graph.nodes[i].inputs) {
      if (input.empty() || available.count(input)) continue;
      auto it = producer.find(input);
      if (it == producer.end()) {
        return not_found(graph.nodes[i].label(), ": input '", input,
                         "' is not a graph input, an initializer or any node's output");
      }
      deps.insert(it->second);
    }
    pending[i] = static_cast<int>(deps.size());
    for (size_t d : deps) dependents[d].push_back(i);
  }
  // Min-heap on the original index keeps file order wherever dependencies allow.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  std::vector<Node> sorted;
  sorted.reserve(n);
  std::vector<bool> done(n, false);
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    done[i] = true;
    sorted.push_back(std::move(graph.nodes[i]));
    for (size_t d : dependents[i]) {
      if (--pending[d] == 0) ready.push(d);
    }
  }
  if (sorted.size() != n) {
    for (size_t i = 0; i < n; ++i) {
      if (!done[i]) {
        // Restore what was moved so the caller's graph stays whole on error.
        std::string label = graph.nodes[i].label();
        return invalid_argument("the graph has a cycle through ", label);
      }
    }
  }
  graph.nodes = std::move(sorted);
  return Status::ok();
}

Status validate(const Graph& graph) {
  std::set<std::string> defined;
  for (const auto& input : graph.inputs) {
    if (!defined.insert(input.name).second) {
      return invalid_argument("graph input '", input.name, "' is declared twice");
    }
  }
  for (const auto& [name, tensor] : graph.initializers) defined.insert(name);
  for (const auto& node : graph.nodes) {
    if (!node.domain.empty() && node.domain != "ai.onnx") {
      return unsupported(node.label(), ": domain '", node.domain, "' is not supported");
    }
    const OpDef* op = find_op(node.op_type);
    if (!op) {
      std::string known;
      for (const auto& def : all_ops()) known += std::string(known.empty() ? "" : ", ") + def.name;
      return unsupported("unsupported op ", node.label(), " (supported: ", known, ")");
    }
    const int arity = static_cast<int>(node.inputs.size());
    if (arity < op->min_inputs || arity > op->max_inputs) {
      return invalid_argument(node.label(), ": has ", arity, " inputs, expected ",
                              op->min_inputs == op->max_inputs
                                  ? std::to_string(op->min_inputs)
                                  : str_cat(op->min_inputs, " to ", op->max_inputs));
    }
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const auto& input = node.inputs[k];
      if (input.empty()) {
        if (static_cast<int>(k) < op->min_inputs) {
          return invalid_argument(node.label(), ": required input ", k, " is empty");
        }
        continue;
      }
      if (!defined.count(input)) {
        return not_found(node.label(), ": input '", input, "' is not defined before it is used");
      }
    }
    for (const auto& output : node.outputs) {
      if (output.empty()) continue;
      if (!defined.insert(output).second) {
        return invalid_argument(node.label(), ": output '", output, "' is already defined");
      }
    }
  }
  for (const auto& output : graph.outputs) {
    if (!defined.count(output.name)) {
      return not_found("graph output '", output.name, "' is not produced by any node");
    }
  }
  return Status::ok();
}

const ValueInfo* ShapeInfo::find(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? nullptr : &it->second;
}

const Tensor* ShapeInfo::constant(const std::string& name) const {
  auto it = constants.find(name);
  return it == constants.end() ? nullptr : &it->second;
}

}  // namespace qyolo
