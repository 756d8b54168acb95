// The op test harness: small graphs built in a few lines, a float64 reference run of a whole
// graph with the reference kernels, and comparisons by normalized error (as ggml's
// test-backend-ops does), so every backend is checked against the same oracle.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "qyolo/executor.h"
#include "qyolo/graph.h"
#include "qyolo/ops.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo::testing {

// ---------------------------------------------------------------------------------------------
// Random data

// A range of values for random inputs; integer tensors use the rounded bounds, inclusive.
struct ValueRange {
  double lo = -2.0;
  double hi = 2.0;
};

// Fills `tensor` with uniform values in `range` drawn from `rng`.
inline void fill_random(Tensor& tensor, std::mt19937& rng, ValueRange range = {}) {
  const int64_t n = tensor.numel();
  auto ints = [&](auto* data) {
    using T = std::remove_pointer_t<decltype(data)>;
    std::uniform_int_distribution<int64_t> dist(static_cast<int64_t>(std::llround(range.lo)),
                                                static_cast<int64_t>(std::llround(range.hi)));
    for (int64_t i = 0; i < n; ++i) data[i] = static_cast<T>(dist(rng));
  };
  std::uniform_real_distribution<double> real(range.lo, range.hi);
  switch (tensor.dtype()) {
    case DType::kFloat32:
      for (int64_t i = 0; i < n; ++i) tensor.data<float>()[i] = static_cast<float>(real(rng));
      break;
    case DType::kFloat64:
      for (int64_t i = 0; i < n; ++i) tensor.data<double>()[i] = real(rng);
      break;
    case DType::kInt8:
      ints(tensor.data<int8_t>());
      break;
    case DType::kUInt8:
      ints(tensor.data<uint8_t>());
      break;
    case DType::kInt32:
      ints(tensor.data<int32_t>());
      break;
    case DType::kInt64:
      ints(tensor.data<int64_t>());
      break;
    default:
      ADD_FAILURE() << "fill_random: no generator for " << dtype_name(tensor.dtype());
  }
}

// A new tensor of `dtype` and `shape` filled by fill_random.
inline Tensor random_tensor(DType dtype, Shape shape, std::mt19937& rng, ValueRange range = {}) {
  Tensor tensor(dtype, std::move(shape));
  fill_random(tensor, rng, range);
  return tensor;
}

// Shorthands for literal tensors: 1-D unless a shape is given (scalars have their own).
inline Tensor floats(std::vector<float> values, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  return Tensor::from_vector(values, shape);
}
inline Tensor int64s(std::vector<int64_t> values, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  return Tensor::from_vector(values, shape);
}
inline Tensor float_scalar(float value) { return Tensor::from_vector(std::vector<float>{value}); }
inline Tensor int64_scalar(int64_t value) {
  return Tensor::from_vector(std::vector<int64_t>{value});
}

// ---------------------------------------------------------------------------------------------
// Graph building

inline Attribute attr_int(int64_t value) { return Attribute::of_int(value); }
inline Attribute attr_float(float value) { return Attribute::of_float(value); }
inline Attribute attr_string(std::string value) { return Attribute::of_string(std::move(value)); }
inline Attribute attr_ints(std::vector<int64_t> values) {
  return Attribute::of_ints(std::move(values));
}
inline Attribute attr_floats(std::vector<float> values) {
  return Attribute::of_floats(std::move(values));
}
inline Attribute attr_tensor(Tensor value) { return Attribute::of_tensor(std::move(value)); }

using Attributes = std::map<std::string, Attribute>;

// Builds a Graph a line at a time; nodes are named "<op>_<index>" unless a name is given.
class GraphBuilder {
 public:
  explicit GraphBuilder(int64_t opset = 13) {
    graph_.name = "op_test";
    graph_.opset_imports[""] = opset;
  }

  GraphBuilder& input(const std::string& name, Shape shape, DType dtype = DType::kFloat32) {
    ValueInfo info;
    info.name = name;
    info.dtype = dtype;
    info.has_shape = true;
    info.dim_params.assign(shape.size(), "");
    info.shape = std::move(shape);
    graph_.inputs.push_back(std::move(info));
    return *this;
  }

  GraphBuilder& initializer(const std::string& name, Tensor value) {
    graph_.initializers[name] = std::move(value);
    return *this;
  }

  GraphBuilder& node(const std::string& op_type, std::vector<std::string> inputs,
                     std::vector<std::string> outputs, Attributes attributes = {},
                     std::string name = "") {
    Node node;
    node.op_type = op_type;
    node.name = name.empty() ? op_type + "_" + std::to_string(graph_.nodes.size()) : name;
    node.inputs = std::move(inputs);
    node.outputs = std::move(outputs);
    node.attributes = std::move(attributes);
    graph_.nodes.push_back(std::move(node));
    return *this;
  }

  GraphBuilder& output(const std::string& name) {
    ValueInfo info;
    info.name = name;
    graph_.outputs.push_back(std::move(info));
    return *this;
  }

  const Graph& graph() const { return graph_; }
  Graph build() const { return graph_; }

 private:
  Graph graph_;
};

// One input of a single-node graph: a graph input (random at run time) or a constant.
struct NodeInput {
  std::string name;
  Shape shape;
  DType dtype = DType::kFloat32;
  Tensor constant;  // when set, the input is an initializer holding this value

  static NodeInput of(std::string name, Shape shape, DType dtype = DType::kFloat32) {
    return {std::move(name), std::move(shape), dtype, {}};
  }
  static NodeInput of_constant(std::string name, Tensor value) {
    Shape shape = value.shape();
    const DType dtype = value.dtype();
    return {std::move(name), std::move(shape), dtype, std::move(value)};
  }
  static NodeInput omitted() { return {}; }
};

// A graph of one node: its inputs become graph inputs or initializers, its outputs
// ("y" or "y0", "y1", ...) graph outputs.
inline Graph single_node_graph(const std::string& op_type, const std::vector<NodeInput>& inputs,
                               Attributes attributes = {}, int num_outputs = 1,
                               int64_t opset = 13) {
  GraphBuilder builder(opset);
  std::vector<std::string> names;
  for (const NodeInput& in : inputs) {
    names.push_back(in.name);
    if (in.name.empty()) continue;
    if (!in.constant.empty()) {
      builder.initializer(in.name, in.constant);
    } else {
      builder.input(in.name, in.shape, in.dtype);
    }
  }
  std::vector<std::string> outputs;
  for (int i = 0; i < num_outputs; ++i) {
    outputs.push_back(num_outputs == 1 ? std::string("y") : str_cat("y", i));
  }
  builder.node(op_type, names, outputs, std::move(attributes), op_type);
  for (const auto& out : outputs) builder.output(out);
  return builder.build();
}

// Random values for every graph input; `ranges` overrides the default range by input name.
inline std::map<std::string, Tensor> random_inputs(
    const Graph& graph, std::mt19937& rng, const std::map<std::string, ValueRange>& ranges = {},
    ValueRange float_range = {-2.0, 2.0}, ValueRange int_range = {-9, 9}) {
  std::map<std::string, Tensor> inputs;
  for (const ValueInfo& info : graph.inputs) {
    const bool is_float = info.dtype == DType::kFloat32 || info.dtype == DType::kFloat64;
    ValueRange range = is_float ? float_range : int_range;
    if (auto it = ranges.find(info.name); it != ranges.end()) range = it->second;
    inputs[info.name] = random_tensor(info.dtype, info.shape, rng, range);
  }
  return inputs;
}

// ---------------------------------------------------------------------------------------------
// Reference run

inline bool is_float_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat64 || dtype == DType::kFloat16;
}

// Float32 and float16 tensors become float64; others are returned unchanged.
inline Expected<Tensor> widen_to_float64(const Tensor& tensor) {
  if (tensor.dtype() == DType::kFloat32 || tensor.dtype() == DType::kFloat16) {
    return cast_tensor(tensor, DType::kFloat64);
  }
  return tensor;
}

// Runs `graph` node by node with the reference kernels in float64: float inputs,
// initializers and every float32 value a node produces (Constant, Cast, ...) are widened,
// integer values are kept. Returns the graph outputs by name.
inline Expected<std::map<std::string, Tensor>> run_graph_reference(
    const Graph& graph, const std::map<std::string, Tensor>& inputs) {
  Graph sorted = graph;
  QYOLO_RETURN_IF_ERROR(topological_sort(sorted));
  std::map<std::string, Tensor> values;
  for (const ValueInfo& input : sorted.inputs) {
    auto it = inputs.find(input.name);
    if (it == inputs.end()) return not_found("reference: input '", input.name, "' is missing");
    QYOLO_ASSIGN_OR_RETURN(values[input.name], widen_to_float64(it->second));
  }
  for (const auto& [name, tensor] : sorted.initializers) {
    if (values.count(name)) continue;  // an input overrides its initializer, as in ONNX
    QYOLO_ASSIGN_OR_RETURN(values[name], widen_to_float64(tensor));
  }
  const int64_t opset = sorted.opset();
  for (const Node& node : sorted.nodes) {
    std::vector<const Tensor*> node_inputs;
    for (const std::string& name : node.inputs) {
      if (name.empty()) {
        node_inputs.push_back(nullptr);
        continue;
      }
      auto it = values.find(name);
      if (it == values.end()) {
        return not_found("reference: ", node.label(), ": input '", name, "' has no value");
      }
      node_inputs.push_back(&it->second);
    }
    auto outputs = run_reference(node, opset, node_inputs);
    if (!outputs) return with_context(outputs.status(), "reference");
    for (size_t i = 0; i < node.outputs.size() && i < outputs->size(); ++i) {
      if (node.outputs[i].empty()) continue;
      QYOLO_ASSIGN_OR_RETURN(values[node.outputs[i]], widen_to_float64((*outputs)[i]));
    }
  }
  std::map<std::string, Tensor> results;
  for (const ValueInfo& output : sorted.outputs) {
    auto it = values.find(output.name);
    if (it == values.end()) return not_found("reference: output '", output.name, "' has no value");
    results[output.name] = it->second;
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Comparison

struct ErrorStats {
  double max_abs_error = 0.0;      // max |actual - reference|
  double max_abs_reference = 0.0;  // max |reference|
  double normalized = 0.0;         // max_abs_error / max(max_abs_reference, 1e-12)
  double nmse = 0.0;               // sum (actual - reference)^2 / sum reference^2
  int64_t worst_index = -1;        // flat index of the largest error (-1: none)
  int64_t mismatches = 0;          // elements that differ at all
  double worst_actual = 0.0, worst_reference = 0.0;
};

// Element-wise errors of `actual` against `reference` (same shape), in double. A NaN on one
// side only counts as an infinite error. Integer tensors compare through int64, exactly.
inline Expected<ErrorStats> compare_tensors(const Tensor& actual, const Tensor& reference) {
  if (actual.shape() != reference.shape()) {
    return invalid_argument("shape ", shape_str(actual.shape()), " differs from the reference ",
                            shape_str(reference.shape()));
  }
  const bool float_actual = is_float_dtype(actual.dtype());
  const bool float_reference = is_float_dtype(reference.dtype());
  if (float_actual != float_reference || (!float_actual && actual.dtype() != reference.dtype())) {
    return invalid_argument("dtype ", dtype_name(actual.dtype()), " differs from the reference ",
                            dtype_name(reference.dtype()));
  }
  ErrorStats stats;
  double sum_error_sq = 0.0, sum_reference_sq = 0.0;
  auto account = [&](int64_t i, double a, double r, double error) {
    if (error != 0.0) ++stats.mismatches;
    if (error > stats.max_abs_error || stats.worst_index < 0) {
      if (error > stats.max_abs_error) stats.max_abs_error = error;
      stats.worst_index = i;
      stats.worst_actual = a;
      stats.worst_reference = r;
    }
    if (std::isfinite(r)) stats.max_abs_reference = std::max(stats.max_abs_reference, std::fabs(r));
    sum_error_sq += error * error;
    sum_reference_sq += r * r;
  };
  if (float_actual) {
    const std::vector<double> a = actual.to_double(), r = reference.to_double();
    for (size_t i = 0; i < a.size(); ++i) {
      double error;
      if (std::isnan(a[i]) || std::isnan(r[i])) {
        error =
            std::isnan(a[i]) && std::isnan(r[i]) ? 0.0 : std::numeric_limits<double>::infinity();
      } else if (a[i] == r[i]) {
        error = 0.0;  // equal infinities too
      } else {
        error = std::fabs(a[i] - r[i]);
      }
      account(static_cast<int64_t>(i), a[i], r[i], error);
    }
  } else {
    const std::vector<int64_t> a = actual.to_int64(), r = reference.to_int64();
    for (size_t i = 0; i < a.size(); ++i) {
      const double error = a[i] == r[i] ? 0.0 : std::fabs(static_cast<double>(a[i] - r[i]));
      account(static_cast<int64_t>(i), static_cast<double>(a[i]), static_cast<double>(r[i]), error);
    }
  }
  stats.normalized = stats.max_abs_error / std::max(stats.max_abs_reference, 1e-12);
  if (sum_reference_sq > 0.0) {
    stats.nmse = sum_error_sq / sum_reference_sq;
  } else {
    stats.nmse = sum_error_sq == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  }
  return stats;
}

// Passes when normalized error <= tolerance and NMSE <= tolerance^2; tolerance 0 asks for
// bit-exact values (data movement, integer paths).
inline ::testing::AssertionResult within_tolerance(const std::string& what, const Tensor& actual,
                                                   const Tensor& reference, double tolerance) {
  auto stats = compare_tensors(actual, reference);
  if (!stats) return ::testing::AssertionFailure() << what << ": " << stats.status().message();
  const bool ok = tolerance == 0.0
                      ? stats->mismatches == 0
                      : stats->normalized <= tolerance && stats->nmse <= tolerance * tolerance;
  if (ok) return ::testing::AssertionSuccess();
  std::ostringstream out;
  out.precision(9);
  out << what << " (" << shape_str(reference.shape()) << "): normalized error " << stats->normalized
      << ", NMSE " << stats->nmse << ", " << stats->mismatches << " of " << reference.numel()
      << " elements differ; tolerance " << tolerance << "; worst at " << stats->worst_index << ": "
      << stats->worst_actual << " vs reference " << stats->worst_reference;
  return ::testing::AssertionFailure() << out.str();
}

// Runs `executor` and the float64 reference on the same inputs and compares every output.
inline ::testing::AssertionResult matches_reference(CpuExecutor& executor, const Graph& graph,
                                                    const std::map<std::string, Tensor>& inputs,
                                                    double tolerance) {
  auto actual = executor.run(inputs);
  if (!actual) return ::testing::AssertionFailure() << "executor: " << actual.status().message();
  auto reference = run_graph_reference(graph, inputs);
  if (!reference) return ::testing::AssertionFailure() << reference.status().message();
  for (const auto& [name, expected] : *reference) {
    auto it = actual->find(name);
    if (it == actual->end()) {
      return ::testing::AssertionFailure() << "executor did not return output '" << name << "'";
    }
    auto result = within_tolerance("output '" + name + "'", it->second, expected, tolerance);
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

// The executor's steps after fusion and layout planning, e.g.
// "Reorder>NHWC,Conv+SiLU,MaxPool,Reorder>NCHW".
inline std::string step_labels(const CpuExecutor& executor) {
  std::string out;
  for (const StepProfile& step : executor.profile()) {
    out += (out.empty() ? "" : ",") + step.op;
  }
  return out;
}

}  // namespace qyolo::testing
