// ONNX import and export (protobuf from Debian's libonnx-dev). The rest of qyolo never
// sees protobuf types: only this module does.
#pragma once

#include <string>

#include "qyolo/graph.h"
#include "qyolo/status.h"

namespace qyolo {

// Reads an ONNX model file into a Graph, nodes topologically sorted. Errors name the file
// and say what it is instead (empty, truncated, not protobuf, JSON, a git-LFS pointer),
// or name the node or tensor that cannot be represented.
Expected<Graph> load_onnx(const std::string& path);
// The same from bytes in memory; `source` names them in errors.
Expected<Graph> parse_onnx(const std::string& bytes, const std::string& source);

// Writes `graph` as an ONNX model that onnx.checker accepts.
Status save_onnx(const Graph& graph, const std::string& path);
// The serialised model bytes.
Expected<std::string> serialize_onnx(const Graph& graph);

}  // namespace qyolo
