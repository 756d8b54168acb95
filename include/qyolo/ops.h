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

// Every op qyolo knows: X(name, fewest inputs, most inputs).
#define QYOLO_OPS(X)          \
  X(Add, 2, 2)                \
  X(BatchNormalization, 5, 5) \
  X(Cast, 1, 1)               \
  X(Concat, 1, 64)            \
  X(Constant, 0, 0)           \
  X(Conv, 2, 3)               \
  X(DequantizeLinear, 2, 3)   \
  X(Div, 2, 2)                \
  X(Gather, 2, 2)             \
  X(Identity, 1, 1)           \
  X(MaxPool, 1, 1)            \
  X(Mul, 2, 2)                \
  X(Pow, 2, 2)                \
  X(QuantizeLinear, 2, 3)     \
  X(Relu, 1, 1)               \
  X(Reshape, 2, 2)            \
  X(Resize, 1, 4)             \
  X(Shape, 1, 1)              \
  X(Sigmoid, 1, 1)            \
  X(Slice, 3, 5)              \
  X(Split, 1, 2)              \
  X(Squeeze, 1, 2)            \
  X(Sub, 2, 2)                \
  X(Transpose, 1, 1)          \
  X(Unsqueeze, 1, 2)

enum class OpType {
#define QYOLO_OP_ENUM(name, min_inputs, max_inputs) k##name,
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
