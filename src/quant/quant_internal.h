// Helpers shared by the translator and the Q/DQ insertion pass.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "qyolo/executor.h"
#include "qyolo/graph.h"

namespace qyolo::quant {

// Values whose content is fixed: initializers and outputs of Constant nodes.
class ConstantValues {
 public:
  explicit ConstantValues(const Graph& graph);
  // The value's tensor, or nullptr when it is computed at run time.
  const Tensor* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }

 private:
  const Graph& graph_;
  std::unordered_map<std::string, const Tensor*> from_nodes_;
};

// Node indices in onnx-graphsurgeon's toposort order: nodes sorted by depth (a node fed only by
// graph inputs and initializers has depth 0, any other one more than its deepest producer),
// ties kept in the order of `current`, which must be a valid topological order.
std::vector<size_t> depth_order(const Graph& graph, const std::vector<size_t>& current);

// Renames a value everywhere it appears: producers, consumers, graph inputs and outputs.
void rename_value(Graph& graph, const std::string& from, const std::string& to);

// Drops nodes none of whose outputs reaches a graph output, then unused initializers and
// value_infos of values that no longer exist. Returns, for each node it was given, whether it
// was kept; the survivors keep their order.
std::vector<bool> remove_dead_code(Graph& graph);

// Runs a graph on the FP32 CPU executor with chosen intermediate values made graph outputs,
// so that calibration can see them. (Those values are not fused away: a Conv whose output is
// probed runs unfused.)
class ActivationProbe {
 public:
  // Every value must be an activation (a graph input or a node output, not a constant).
  static Expected<ActivationProbe> create(const Graph& graph, std::vector<std::string> values,
                                          const std::map<std::string, Shape>& input_shapes = {});

  struct Result {
    std::map<std::string, Tensor> outputs;
    std::vector<const Tensor*> values;  // float32, in create()'s order; into outputs or the batch
  };
  // Runs one batch; the result's pointers may point into `batch`.
  Expected<Result> run(const std::map<std::string, Tensor>& batch);

  const std::vector<std::string>& values() const { return values_; }
  const CpuExecutor& executor() const { return *executor_; }

 private:
  std::shared_ptr<CpuExecutor> executor_;
  std::vector<std::string> values_;
};

}  // namespace qyolo::quant
