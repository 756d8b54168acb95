// The FP32 CPU executor: runs a Graph on the host with the reference kernels, except where
// a faster kernel exists (convolutions through oneDNN, fused with their SiLU).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

struct ExecutorOptions {
  // Overrides the graph inputs' shapes (needed when they are symbolic).
  std::map<std::string, Shape> input_shapes;
  // Fuse Conv+SiLU and Conv+Sigmoid. Off when QYOLO_DISABLE_FUSION=1 is set.
  bool fuse = true;
  // Use oneDNN for convolutions; false runs the reference loops (slow; for tests).
  bool fast_conv = true;
};

// Per-step timing of one run, in execution order.
struct StepProfile {
  std::string name;     // node name
  std::string op;       // op type, "Conv+SiLU" for a fused step
  double milliseconds;  // accumulated over runs
};

class CpuExecutor {
 public:
  // Checks the graph, infers shapes, folds constants and prepares kernels.
  static Expected<std::unique_ptr<CpuExecutor>> create(const Graph& graph,
                                                       ExecutorOptions options = {});
  ~CpuExecutor();
  CpuExecutor(const CpuExecutor&) = delete;
  CpuExecutor& operator=(const CpuExecutor&) = delete;

  // Runs the graph. Every graph input must be given with the prepared dtype and shape;
  // errors name the tensor and what was expected. Returns the graph outputs by name.
  Expected<std::map<std::string, Tensor>> run(const std::map<std::string, Tensor>& inputs);

  const std::vector<ValueInfo>& inputs() const;
  const std::vector<ValueInfo>& outputs() const;
  // Number of steps after fusion and folding.
  size_t num_steps() const;
  // Timings accumulated over all runs so far when profiling is on.
  void set_profiling(bool enabled);
  std::vector<StepProfile> profile() const;

  struct Impl;

 private:
  explicit CpuExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qyolo
