// ONNX ModelProto -> qyolo::Graph. Everything protobuf stays in this file and onnx_export.cpp.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>

#include "qyolo/onnx.h"

namespace qyolo {
namespace {

static_assert(std::endian::native == std::endian::little,
              "ONNX raw_data is little-endian; a big-endian host would need byte swaps");

// Anything larger is garbage: protobuf cannot hold more than 2 GiB of data anyway.
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 34;
// ONNX is at IR version 10 today; a wildly larger number means random bytes happened to parse.
constexpr int64_t kMaxPlausibleIrVersion = 100;

constexpr std::string_view kLfsPointerPrefix = "version https://git-lfs";

Status tensor_error(const std::string& what, const std::string& message) {
  return invalid_argument(what, ": ", message);
}

// Element count of `dims`, or an error if a dimension is negative or the total is absurd.
Expected<uint64_t> checked_numel(const Shape& dims, size_t element_size, const std::string& what) {
  uint64_t numel = 1;
  for (int64_t dim : dims) {
    if (dim < 0) return tensor_error(what, str_cat("negative dimension ", dim, " in dims"));
    if (dim != 0 && numel > kMaxTensorBytes / static_cast<uint64_t>(dim)) {
      return tensor_error(what, "dims describe more data than an ONNX file can hold");
    }
    numel *= static_cast<uint64_t>(dim);
  }
  if (numel > kMaxTensorBytes / element_size) {
    return tensor_error(what, "dims describe more data than an ONNX file can hold");
  }
  return numel;
}

// Copies a typed repeated field into `tensor`, converting each value with `convert`.
template <typename Dst, typename Field, typename Convert>
void copy_typed(const Field& field, Tensor& tensor, Convert convert) {
  Dst* out = tensor.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = convert(field.Get(i));
}

// `what` names the tensor in errors ("initializer 'w'", "attribute 'value' of Constant 'c'").
Expected<Tensor> import_tensor(const onnx::TensorProto& proto, const std::string& what) {
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    return unsupported(what,
                       ": data is stored in an external file (data_location EXTERNAL), "
                       "which qyolo does not read; re-save the model with the data inline");
  }
  if (proto.has_segment()) {
    return unsupported(what, ": segmented tensors are not supported");
  }
  const int32_t code = proto.data_type();
  if (!dtype_is_known(code)) {
    const auto* descriptor = onnx::TensorProto::DataType_descriptor();
    const auto* value = descriptor->FindValueByNumber(code);
    return unsupported(what, ": data type ", value ? value->name() : "unknown", " (", code,
                       ") is not supported (qyolo reads float32, float64, float16, int8, uint8, "
                       "int32, int64, bool)");
  }
  const auto dtype = static_cast<DType>(code);
  const size_t element_size = dtype_size(dtype);
  Shape shape(proto.dims().begin(), proto.dims().end());
  QYOLO_ASSIGN_OR_RETURN(const uint64_t numel, checked_numel(shape, element_size, what));
  const uint64_t expected_bytes = numel * element_size;

  // Size the data actually present, in bytes of `dtype`, whichever field holds it.
  uint64_t got_bytes = 0;
  if (proto.has_raw_data()) {
    got_bytes = proto.raw_data().size();
  } else {
    int count = 0;
    switch (dtype) {
      case DType::kFloat32:
        count = proto.float_data_size();
        break;
      case DType::kFloat64:
        count = proto.double_data_size();
        break;
      case DType::kInt64:
        count = proto.int64_data_size();
        break;
      default:  // int32, and int8, uint8, bool and float16 bits, one value per int32
        count = proto.int32_data_size();
        break;
    }
    got_bytes = static_cast<uint64_t>(count) * element_size;
  }
  if (got_bytes != expected_bytes) {
    return tensor_error(what, str_cat("expected ", expected_bytes, " bytes for ", dtype_name(dtype),
                                      " ", shape_str(shape), ", got ", got_bytes));
  }

  Tensor tensor(dtype, std::move(shape));
  if (proto.has_raw_data()) {
    if (expected_bytes) std::memcpy(tensor.raw(), proto.raw_data().data(), expected_bytes);
    return tensor;
  }
  switch (dtype) {
    case DType::kFloat32:
      copy_typed<float>(proto.float_data(), tensor, [](float v) { return v; });
      break;
    case DType::kFloat64:
      copy_typed<double>(proto.double_data(), tensor, [](double v) { return v; });
      break;
    case DType::kInt64:
      copy_typed<int64_t>(proto.int64_data(), tensor, [](int64_t v) { return v; });
      break;
    case DType::kInt32:
      copy_typed<int32_t>(proto.int32_data(), tensor, [](int32_t v) { return v; });
      break;
    case DType::kInt8:
      copy_typed<int8_t>(proto.int32_data(), tensor,
                         [](int32_t v) { return static_cast<int8_t>(v); });
      break;
    case DType::kUInt8:
      copy_typed<uint8_t>(proto.int32_data(), tensor,
                          [](int32_t v) { return static_cast<uint8_t>(v); });
      break;
    case DType::kBool:
      copy_typed<uint8_t>(proto.int32_data(), tensor, [](int32_t v) { return uint8_t{v != 0}; });
      break;
    case DType::kFloat16:
      // int32_data holds the IEEE half bit pattern in its low 16 bits.
      copy_typed<uint16_t>(proto.int32_data(), tensor,
                           [](int32_t v) { return static_cast<uint16_t>(v); });
      break;
    case DType::kUndefined:
      break;
  }
  return tensor;
}

Expected<ValueInfo> import_value_info(const onnx::ValueInfoProto& proto, const std::string& role) {
  ValueInfo info;
  info.name = proto.name();
  if (info.name.empty()) return invalid_argument(role, " with an empty name");
  if (!proto.has_type()) return info;
  if (!proto.type().has_tensor_type()) {
    return unsupported(role, " '", info.name,
                       "' is not a tensor (sequences, maps and optionals "
                       "are not supported)");
  }
  const auto& tensor_type = proto.type().tensor_type();
  const int32_t code = tensor_type.elem_type();
  if (code != 0 && !dtype_is_known(code)) {
    const auto* value = onnx::TensorProto::DataType_descriptor()->FindValueByNumber(code);
    return unsupported(role, " '", info.name, "': data type ", value ? value->name() : "unknown",
                       " (", code, ") is not supported");
  }
  info.dtype = static_cast<DType>(code);
  if (tensor_type.has_shape()) {
    info.has_shape = true;
    for (const auto& dim : tensor_type.shape().dim()) {
      if (dim.has_dim_value()) {
        info.shape.push_back(dim.dim_value());
        info.dim_params.emplace_back();
      } else {
        // A symbolic (dim_param) or wholly unknown dimension.
        info.shape.push_back(-1);
        info.dim_params.push_back(dim.has_dim_param() ? dim.dim_param() : std::string());
      }
    }
  }
  return info;
}

// Old exporters leave AttributeProto.type unset; infer it from the one field that is filled.
onnx::AttributeProto::AttributeType attribute_type(const onnx::AttributeProto& proto) {
  using A = onnx::AttributeProto;
  if (proto.type() != A::UNDEFINED) return proto.type();
  if (proto.has_f()) return A::FLOAT;
  if (proto.has_i()) return A::INT;
  if (proto.has_s()) return A::STRING;
  if (proto.has_t()) return A::TENSOR;
  if (proto.has_g()) return A::GRAPH;
  if (proto.floats_size()) return A::FLOATS;
  if (proto.ints_size()) return A::INTS;
  if (proto.strings_size()) return A::STRINGS;
  if (proto.graphs_size() || proto.tensors_size()) return A::GRAPHS;
  return A::UNDEFINED;
}

Expected<Attribute> import_attribute(const onnx::AttributeProto& proto, const Node& node) {
  using A = onnx::AttributeProto;
  const std::string what = str_cat(node.label(), ": attribute '", proto.name(), "'");
  Attribute attribute;
  const A::AttributeType type = attribute_type(proto);
  switch (type) {
    case A::FLOAT:
      attribute.kind = Attribute::Kind::kFloat;
      attribute.f = proto.f();
      break;
    case A::INT:
      attribute.kind = Attribute::Kind::kInt;
      attribute.i = proto.i();
      break;
    case A::STRING:
      attribute.kind = Attribute::Kind::kString;
      attribute.s = proto.s();
      break;
    case A::TENSOR: {
      attribute.kind = Attribute::Kind::kTensor;
      QYOLO_ASSIGN_OR_RETURN(
          attribute.t,
          import_tensor(proto.t(), str_cat("attribute '", proto.name(), "' of ", node.label())));
      break;
    }
    case A::FLOATS:
      attribute.kind = Attribute::Kind::kFloats;
      attribute.floats.assign(proto.floats().begin(), proto.floats().end());
      break;
    case A::INTS:
      attribute.kind = Attribute::Kind::kInts;
      attribute.ints.assign(proto.ints().begin(), proto.ints().end());
      break;
    case A::STRINGS:
      attribute.kind = Attribute::Kind::kStrings;
      attribute.strings.assign(proto.strings().begin(), proto.strings().end());
      break;
    default: {
      const auto* value = A::AttributeType_descriptor()->FindValueByNumber(type);
      return unsupported(what, " has kind ", value ? value->name() : std::to_string(type),
                         ", which qyolo does not support");
    }
  }
  return attribute;
}

// Checks that bytes which protobuf accepted look like a model: random bytes sometimes parse.
Status check_plausible(const onnx::ModelProto& model) {
  if (model.ir_version() <= 0 || model.ir_version() > kMaxPlausibleIrVersion) {
    return invalid_argument("not a valid ONNX model (ir_version ", model.ir_version(),
                            "; truncated or corrupt?)");
  }
  if (!model.has_graph()) return invalid_argument("not a valid ONNX model: it has no graph");
  if (model.graph().node_size() == 0) {
    return invalid_argument("not a valid ONNX model: its graph has no nodes");
  }
  for (int i = 0; i < model.graph().node_size(); ++i) {
    if (model.graph().node(i).op_type().empty()) {
      return invalid_argument("not a valid ONNX model: node ", i, " ('",
                              model.graph().node(i).name(), "') has no op_type");
    }
  }
  return Status::ok();
}

std::string normalize_domain(const std::string& domain) {
  // "ai.onnx" is the long spelling of the default domain.
  return domain == "ai.onnx" ? std::string() : domain;
}

Expected<Graph> import_model(const onnx::ModelProto& model) {
  Graph graph;
  graph.ir_version = model.ir_version();
  graph.producer_name = model.producer_name();
  graph.producer_version = model.producer_version();
  graph.opset_imports.clear();
  for (const auto& opset : model.opset_import()) {
    graph.opset_imports[normalize_domain(opset.domain())] = opset.version();
  }
  const onnx::GraphProto& proto = model.graph();
  graph.name = proto.name();

  for (const auto& initializer : proto.initializer()) {
    const std::string what = "initializer '" + initializer.name() + "'";
    if (initializer.name().empty()) return invalid_argument("an initializer has an empty name");
    if (graph.initializers.count(initializer.name())) {
      return invalid_argument(what, " appears twice");
    }
    QYOLO_ASSIGN_OR_RETURN(Tensor tensor, import_tensor(initializer, what));
    graph.initializers.emplace(initializer.name(), std::move(tensor));
  }
  if (proto.sparse_initializer_size() > 0) {
    return unsupported("sparse initializer '", proto.sparse_initializer(0).values().name(),
                       "' is not supported");
  }

  for (const auto& input : proto.input()) {
    // Before IR 4 every initializer was also listed as an input; those are weights, not inputs.
    if (graph.initializers.count(input.name())) continue;
    QYOLO_ASSIGN_OR_RETURN(ValueInfo info, import_value_info(input, "graph input"));
    graph.inputs.push_back(std::move(info));
  }
  for (const auto& output : proto.output()) {
    QYOLO_ASSIGN_OR_RETURN(ValueInfo info, import_value_info(output, "graph output"));
    graph.outputs.push_back(std::move(info));
  }
  for (const auto& value : proto.value_info()) {
    QYOLO_ASSIGN_OR_RETURN(ValueInfo info, import_value_info(value, "value_info"));
    graph.value_infos.push_back(std::move(info));
  }

  std::set<std::string> node_names;
  for (const auto& node_proto : proto.node()) node_names.insert(node_proto.name());
  graph.nodes.reserve(proto.node_size());
  for (int index = 0; index < proto.node_size(); ++index) {
    const onnx::NodeProto& node_proto = proto.node(index);
    Node node;
    node.op_type = node_proto.op_type();
    node.domain = normalize_domain(node_proto.domain());
    node.name = node_proto.name();
    if (node.name.empty()) {
      // A stable name so errors and per-layer settings can refer to the node.
      node.name = str_cat(node.op_type, "_", index);
      while (node_names.count(node.name)) node.name += "_";
      node_names.insert(node.name);
    }
    node.inputs.assign(node_proto.input().begin(), node_proto.input().end());
    node.outputs.assign(node_proto.output().begin(), node_proto.output().end());
    for (const auto& attribute_proto : node_proto.attribute()) {
      if (node.attributes.count(attribute_proto.name())) {
        return invalid_argument(node.label(), ": attribute '", attribute_proto.name(),
                                "' appears twice");
      }
      QYOLO_ASSIGN_OR_RETURN(Attribute attribute, import_attribute(attribute_proto, node));
      node.attributes.emplace(attribute_proto.name(), std::move(attribute));
    }
    graph.nodes.push_back(std::move(node));
  }

  QYOLO_RETURN_IF_ERROR(topological_sort(graph));
  return graph;
}

// True for text opening with '{' or '['. The text check keeps random bytes that happen to
// start with a brace from being called JSON.
bool looks_like_json(const std::string& bytes) {
  constexpr size_t kSniffBytes = 256;
  const size_t end = std::min(bytes.size(), kSniffBytes);
  auto is_json_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t first = 0;
  while (first < end && is_json_space(bytes[first])) ++first;
  if (first == end || (bytes[first] != '{' && bytes[first] != '[')) return false;
  for (size_t i = 0; i < end;) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    // Control bytes other than whitespace never appear in JSON text.
    if ((c < 0x20 && !is_json_space(bytes[i])) || c == 0x7f) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Non-ASCII must be well-formed UTF-8 (a sequence cut by the window's end is fine).
    size_t length = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
    } else {
      return false;
    }
    for (size_t k = 1; k < length && i + k < end; ++k) {
      if ((static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

// Says what a file that is not protobuf most likely is, or "" when it is not recognised.
std::string describe_non_protobuf(const std::string& bytes, const std::string& source) {
  if (bytes.compare(0, kLfsPointerPrefix.size(), kLfsPointerPrefix) == 0) {
    return source + " is a git-LFS pointer file, not the model: run `git lfs pull` to fetch it";
  }
  if (looks_like_json(bytes)) return source + " looks like JSON, not an ONNX protobuf";
  return {};
}

}  // namespace

Expected<Graph> parse_onnx(const std::string& bytes, const std::string& source) {
  if (bytes.empty()) return invalid_argument(source, ": empty file, not an ONNX model");
  if (std::string what = describe_non_protobuf(bytes, source); !what.empty()) {
    return invalid_argument(what);
  }
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) {
    return invalid_argument(source, ": not a valid ONNX protobuf (truncated or corrupt?)");
  }
  QYOLO_RETURN_IF_ERROR(with_context(check_plausible(model), source));
  Expected<Graph> graph = import_model(model);
  if (!graph) return with_context(graph.status(), source);
  return graph;
}

Expected<Graph> load_onnx(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return io_error(path, " is a directory, not an ONNX model file");
  }
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) {
    const int saved_errno = errno;
    Status status = io_error("cannot open ", path, ": ", std::strerror(saved_errno));
    if (saved_errno == ENOENT) return Status(StatusCode::kNotFound, status.message());
    return status;
  }
  std::string bytes;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) bytes.append(buffer, n);
  const bool read_failed = std::ferror(file) != 0;
  std::fclose(file);
  if (read_failed) return io_error("cannot read ", path, ": ", std::strerror(errno));
  return parse_onnx(bytes, path);
}

}  // namespace qyolo
