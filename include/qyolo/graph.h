// The graph IR: named values, nodes in ONNX's shape, initializers, and shape inference.
// Nodes refer to values by name, as ONNX does, so passes can rewrite edges by renaming.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

struct Attribute {
  enum class Kind { kUndefined, kFloat, kInt, kString, kTensor, kFloats, kInts, kStrings };
  Kind kind = Kind::kUndefined;
  float f = 0.0f;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;

  static Attribute of_int(int64_t value);
  static Attribute of_float(float value);
  static Attribute of_string(std::string value);
  static Attribute of_ints(std::vector<int64_t> values);
  static Attribute of_floats(std::vector<float> values);
  static Attribute of_tensor(Tensor value);
  bool operator==(const Attribute& other) const;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;               // "" is the default ONNX domain
  std::vector<std::string> inputs;  // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;

  bool has_attribute(const std::string& key) const { return attributes.count(key) != 0; }
  // Typed attribute reads that fall back to `fallback` when the attribute is absent.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  float get_float(const std::string& key, float fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> get_ints(const std::string& key, std::vector<int64_t> fallback = {}) const;
  // "Conv '/model.0/conv/Conv'": how errors name a node.
  std::string label() const;
  bool operator==(const Node& other) const;
};

// The type of a named value. `dim_params` keeps symbolic dimension names ("" where numeric).
struct ValueInfo {
  std::string name;
  DType dtype = DType::kUndefined;
  bool has_shape = false;
  Shape shape;
  std::vector<std::string> dim_params;
  bool operator==(const ValueInfo& other) const;
};

struct Graph {
  std::string name;
  int64_t ir_version = 7;
  std::map<std::string, int64_t> opset_imports = {{"", 13}};  // domain -> version
  std::string producer_name;
  std::string producer_version;
  std::vector<ValueInfo> inputs;  // graph inputs that are not initializers
  std::vector<ValueInfo> outputs;
  std::vector<ValueInfo> value_infos;  // optional annotations of intermediate values
  std::vector<Node> nodes;             // kept in topological order by the importer
  std::map<std::string, Tensor> initializers;

  // The default-domain opset version.
  int64_t opset() const;
  const Tensor* find_initializer(const std::string& value) const;
  const ValueInfo* find_input(const std::string& value) const;
  bool is_output(const std::string& value) const;
  bool operator==(const Graph& other) const;
};

// Orders nodes so every value is produced before it is used, keeping file order where it
// is free; an error names a node whose input nothing produces, or a cycle.
Status topological_sort(Graph& graph);

// Structural checks: unique value names, every input produced, known ops, arity.
Status validate(const Graph& graph);

// Node index by the values they consume; a value's consumers in node order.
std::unordered_map<std::string, std::vector<size_t>> consumers_by_value(const Graph& graph);

// What shape inference knows about every value: its type and, where it can be computed
// without the graph's inputs (initializers, Constant, Shape of a static tensor, ...), its value.
struct ShapeInfo {
  std::unordered_map<std::string, ValueInfo> values;
  std::unordered_map<std::string, Tensor> constants;
  const ValueInfo* find(const std::string& name) const;
  const Tensor* constant(const std::string& name) const;
};

// Infers every value's dtype and shape from the graph inputs' (optionally overridden)
// shapes. Nodes whose inputs are all constant are evaluated, so Reshape targets, Resize
// scales and Slice bounds computed in the graph resolve. Errors name the node.
Expected<ShapeInfo> infer_shapes(const Graph& graph,
                                 const std::map<std::string, Shape>& input_shapes = {});

}  // namespace qyolo
