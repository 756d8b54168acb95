// qyolo::Graph -> ONNX ModelProto, written so that onnx.checker (full_check) accepts it.
#include <onnx/onnx_pb.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "qyolo/onnx.h"

namespace qyolo {
namespace {

static_assert(std::endian::native == std::endian::little,
              "ONNX raw_data is little-endian; a big-endian host would need byte swaps");

constexpr int64_t kDefaultIrVersion = 7;
// The checker rejects a graph without a name.
constexpr const char* kDefaultGraphName = "qyolo";

Status export_tensor(const Tensor& tensor, const std::string& what, onnx::TensorProto* proto) {
  if (tensor.empty() || !dtype_is_known(static_cast<int32_t>(tensor.dtype()))) {
    return invalid_argument(what, ": tensor has no data type, cannot export it");
  }
  proto->set_data_type(static_cast<int32_t>(tensor.dtype()));
  for (int64_t dim : tensor.shape()) proto->add_dims(dim);
  // raw_data is the compact form and keeps float bit patterns (NaN payloads, -0) exact.
  proto->set_raw_data(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  return Status::ok();
}

void export_value_info(const ValueInfo& info, onnx::ValueInfoProto* proto) {
  proto->set_name(info.name);
  if (info.dtype == DType::kUndefined && !info.has_shape) return;
  auto* tensor_type = proto->mutable_type()->mutable_tensor_type();
  if (info.dtype != DType::kUndefined) tensor_type->set_elem_type(static_cast<int32_t>(info.dtype));
  if (!info.has_shape) return;
  // mutable_shape() creates the (possibly rank-0) shape even when no dim is added.
  auto* shape = tensor_type->mutable_shape();
  for (size_t i = 0; i < info.shape.size(); ++i) {
    auto* dim = shape->add_dim();
    if (i < info.dim_params.size() && !info.dim_params[i].empty()) {
      dim->set_dim_param(info.dim_params[i]);
    } else if (info.shape[i] >= 0) {
      dim->set_dim_value(info.shape[i]);
    }  // else: an unknown dimension is a dim with neither field set
  }
}

Status export_attribute(const std::string& name, const Attribute& attribute, const Node& node,
                        onnx::AttributeProto* proto) {
  using A = onnx::AttributeProto;
  proto->set_name(name);
  switch (attribute.kind) {
    case Attribute::Kind::kFloat:
      proto->set_type(A::FLOAT);
      proto->set_f(attribute.f);
      break;
    case Attribute::Kind::kInt:
      proto->set_type(A::INT);
      proto->set_i(attribute.i);
      break;
    case Attribute::Kind::kString:
      proto->set_type(A::STRING);
      proto->set_s(attribute.s);
      break;
    case Attribute::Kind::kTensor:
      proto->set_type(A::TENSOR);
      QYOLO_RETURN_IF_ERROR(export_tensor(
          attribute.t, str_cat(node.label(), ": attribute '", name, "'"), proto->mutable_t()));
      break;
    case Attribute::Kind::kFloats:
      proto->set_type(A::FLOATS);
      for (float value : attribute.floats) proto->add_floats(value);
      break;
    case Attribute::Kind::kInts:
      proto->set_type(A::INTS);
      for (int64_t value : attribute.ints) proto->add_ints(value);
      break;
    case Attribute::Kind::kStrings:
      proto->set_type(A::STRINGS);
      for (const std::string& value : attribute.strings) proto->add_strings(value);
      break;
    case Attribute::Kind::kUndefined:
      return invalid_argument(node.label(), ": attribute '", name,
                              "' has no kind, cannot export it");
  }
  return Status::ok();
}

Status export_model(const Graph& graph, onnx::ModelProto* model) {
  const int64_t ir_version = graph.ir_version > 0 ? graph.ir_version : kDefaultIrVersion;
  model->set_ir_version(ir_version);
  model->set_producer_name(graph.producer_name);
  model->set_producer_version(graph.producer_version);
  for (const auto& [domain, version] : graph.opset_imports) {
    auto* opset = model->add_opset_import();
    opset->set_domain(domain);
    opset->set_version(version);
  }

  onnx::GraphProto* proto = model->mutable_graph();
  proto->set_name(graph.name.empty() ? kDefaultGraphName : graph.name);
  for (const ValueInfo& input : graph.inputs) export_value_info(input, proto->add_input());
  if (ir_version < 4) {
    // Before IR 4 the checker requires every initializer to be listed as a graph input too.
    for (const auto& [name, tensor] : graph.initializers) {
      if (graph.find_input(name)) continue;
      ValueInfo info{name, tensor.dtype(), true, tensor.shape(), {}};
      export_value_info(info, proto->add_input());
    }
  }
  for (const ValueInfo& output : graph.outputs) export_value_info(output, proto->add_output());
  for (const ValueInfo& value : graph.value_infos)
    export_value_info(value, proto->add_value_info());

  for (const Node& node : graph.nodes) {
    if (node.op_type.empty()) return invalid_argument("node '", node.name, "' has no op_type");
    onnx::NodeProto* node_proto = proto->add_node();
    node_proto->set_name(node.name);
    node_proto->set_op_type(node.op_type);
    if (!node.domain.empty()) node_proto->set_domain(node.domain);
    for (const std::string& input : node.inputs) node_proto->add_input(input);
    for (const std::string& output : node.outputs) node_proto->add_output(output);
    for (const auto& [name, attribute] : node.attributes) {
      QYOLO_RETURN_IF_ERROR(export_attribute(name, attribute, node, node_proto->add_attribute()));
    }
  }

  for (const auto& [name, tensor] : graph.initializers) {
    onnx::TensorProto* initializer = proto->add_initializer();
    initializer->set_name(name);
    QYOLO_RETURN_IF_ERROR(export_tensor(tensor, "initializer '" + name + "'", initializer));
  }
  return Status::ok();
}

}  // namespace

Expected<std::string> serialize_onnx(const Graph& graph) {
  onnx::ModelProto model;
  QYOLO_RETURN_IF_ERROR(
      with_context(export_model(graph, &model), "exporting graph '" + graph.name + "'"));
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    // Protobuf refuses messages over 2 GiB.
    return internal_error("exporting graph '", graph.name, "': protobuf serialisation failed (",
                          model.ByteSizeLong(), " bytes; the ONNX limit is 2 GiB)");
  }
  return bytes;
}

Status save_onnx(const Graph& graph, const std::string& path) {
  QYOLO_ASSIGN_OR_RETURN(const std::string bytes, serialize_onnx(graph));
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return io_error("cannot open ", path, " for writing: ", std::strerror(errno));
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  const bool close_failed = std::fclose(file) != 0;
  if (written != bytes.size() || close_failed) {
    return io_error("cannot write ", path, ": ", std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace qyolo
