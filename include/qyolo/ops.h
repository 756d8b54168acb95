// The operator table: one place lists every op qyolo knows, each with its shape rule and a
// plain reference kernel (float32 and float64). Faster backends override kernels, never
// semantics; the reference is the test oracle.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

#define QYOLO_OPS(X)    \
  X(Add)                \
  X(BatchNormalization) \
  X(Cast)               \
  X(Concat)             \
  X(Constant)           \
  X(Conv)               \
  X(DequantizeLinear)   \
  X(Div)                \
  X(Gather)             \
  X(Identity)           \
  X(MaxPool)            \
  X(Mul)                \
  X(Pow)                \
  X(QuantizeLinear)     \
  X(Relu)               \
  X(Reshape)            \
  X(Resize)             \
  X(Shape)              \
  X(Sigmoid)            \
  X(Slice)              \
  X(Split)              \
  X(Squeeze)            \
  X(Sub)                \
  X(Transpose)          \
  X(Unsqueeze)

enum class OpType {
#define QYOLO_OP_ENUM(name) k##name,
  QYOLO_OPS(QYOLO_OP_ENUM)
#undef QYOLO_OP_ENUM
};

// What a shape rule sees: the node, its inputs' types, and their values where known.
struct InferContext {
  const Node& node;
  int64_t opset;
  std::vector<const ValueInfo*> inputs;  // nullptr for an omitted optional input
  std::vector<const Tensor*> values;     // nullptr where the value is not known
  std::vector<ValueInfo> outputs;        // filled by the rule (name set by the caller)
};

using InferFn = Status (*)(InferContext& ctx);
// Outputs arrive allocated with the inferred dtype and shape. Inputs may be nullptr (omitted).
using ComputeFn = Status (*)(const Node& node, std::span<const Tensor* const> inputs,
                             std::span<Tensor* const> outputs);

struct OpDef {
  OpType type;
  const char* name;
  int min_inputs;
  int max_inputs;
  InferFn infer;
  ComputeFn compute;
};

// The op named `op_type` in the default domain, or nullptr.
const OpDef* find_op(std::string_view op_type);
// Every op in table order.
std::span<const OpDef> all_ops();

// Runs one node with the reference kernel: infers its outputs from the inputs, allocates and
// computes them. Used for constant folding and as the oracle in tests.
Expected<std::vector<Tensor>> run_reference(const Node& node, int64_t opset,
                                            const std::vector<const Tensor*>& inputs);

}  // namespace qyolo
