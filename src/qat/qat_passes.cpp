// Graph passes for QAT that need no LibTorch: the input size, and Q/DQ insertion calibrated
// with quant.h's calibrators (the head convolutions and trimming are quant.h's).
#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "qyolo/qat.h"

namespace qyolo {


Expected<Graph> with_input_size(const Graph& graph, int size) {
  if (graph.inputs.empty()) return invalid_argument("graph '", graph.name, "' has no input");
  if (size <= 0 || size % 32 != 0) {
    return invalid_argument("input size ", size,
                            " is not a positive multiple of 32 (the "
                            "largest YOLOv5 stride)");
  }
  Graph out = graph;
  ValueInfo& input = out.inputs[0];
  input.shape = {1, 3, size, size};
  input.has_shape = true;
  input.dim_params.assign(4, "");
  out.value_infos.clear();
  auto info = infer_shapes(out);
  if (!info) {
    return with_context(info.status(), str_cat("at input size ", size,
                                               " (a full export's Detect constants fit "
                                               "only its own size; trim it)"));
  }
  for (auto& output : out.outputs) {
    if (const ValueInfo* value = info->find(output.name)) output = *value;
  }
  return out;
}

namespace {

// Removes the Q/DQ nodes nothing reads.
void remove_unread_qdq(Graph& graph) {
  for (size_t before = 0; before != graph.nodes.size();) {
    before = graph.nodes.size();
    std::set<std::string> read;
    for (const auto& node : graph.nodes) read.insert(node.inputs.begin(), node.inputs.end());
    for (const auto& output : graph.outputs) read.insert(output.name);
    graph.nodes.erase(std::remove_if(graph.nodes.begin(), graph.nodes.end(),
                                     [&](const Node& node) {
                                       return (node.op_type == "QuantizeLinear" ||
                                               node.op_type == "DequantizeLinear") &&
                                              !read.count(node.outputs[0]);
                                     }),
                      graph.nodes.end());
  }
}

}  // namespace

Graph engine_rounding(const Graph& qat, const std::set<std::string>& fp16_layers) {
  Graph out = qat;
  std::unordered_map<std::string, size_t> producer;
  std::unordered_map<std::string, std::vector<size_t>> consumers;
  auto index = [&] {
    producer.clear();
    consumers.clear();
    for (size_t i = 0; i < out.nodes.size(); ++i) {
      for (const auto& o : out.nodes[i].outputs) producer[o] = i;
      for (const auto& in : out.nodes[i].inputs) consumers[in].push_back(i);
    }
  };
  auto node_of = [&](const std::string& value) -> const Node* {
    auto it = producer.find(value);
    return it == producer.end() ? nullptr : &out.nodes[it->second];
  };
  // The value a DequantizeLinear(QuantizeLinear(x)) pair stands for, else the value itself.
  auto unquantized = [&](const std::string& value) -> std::string {
    const Node* dq = node_of(value);
    if (!dq || dq->op_type != "DequantizeLinear") return value;
    const Node* q = node_of(dq->inputs[0]);
    return q && q->op_type == "QuantizeLinear" ? q->inputs[0] : value;
  };
  index();
  for (Node& mul : out.nodes) {
    if (mul.op_type != "Mul" || mul.inputs.size() != 2) continue;
    const std::string a = unquantized(mul.inputs[0]), b = unquantized(mul.inputs[1]);
    const Node* conv = node_of(a);
    const Node* sigmoid = node_of(b);
    if (conv && conv->op_type == "Conv" && sigmoid && sigmoid->op_type == "Sigmoid" &&
        sigmoid->inputs[0] == a)
      mul.inputs = {a, b};
  }
  remove_unread_qdq(out);
  index();
  for (Node& conv : out.nodes) {
    if (conv.op_type != "Conv") continue;
    bool quantized_output = false;
    std::vector<std::string> values = {conv.outputs[0]};
    for (size_t c : consumers[conv.outputs[0]])
      if (out.nodes[c].op_type == "Mul") values.push_back(out.nodes[c].outputs[0]);
    for (const auto& value : values)
      for (size_t c : consumers[value])
        quantized_output |= out.nodes[c].op_type == "QuantizeLinear";
    if (quantized_output && !fp16_layers.count(conv.name)) continue;
    for (size_t k = 0; k < std::min<size_t>(2, conv.inputs.size()); ++k)
      conv.inputs[k] = unquantized(conv.inputs[k]);
  }
  remove_unread_qdq(out);
  return out;
}

Expected<std::vector<std::string>> list_training_images(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return not_found(dir, " is not a folder");
  std::vector<std::string> files;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (it->is_regular_file(ec) && (ext == ".jpg" || ext == ".jpeg" || ext == ".png"))
      files.push_back(it->path().string());
  }
  if (ec) return io_error("cannot list ", dir, ": ", ec.message());
  if (files.empty()) return not_found("no images (.jpg, .jpeg, .png) in ", dir);
  std::sort(files.begin(), files.end());
  return files;
}

Expected<QatCalibration> calibrate_qat(const Graph& fp32, QdqPlacement placement,
                                       const std::vector<std::string>& images, int size,
                                       const CalibrationOptions& options,
                                       const std::function<void(int64_t)>& progress) {
  if (fp32.inputs.empty()) return invalid_argument("graph '", fp32.name, "' has no input");
  const std::string input_name = fp32.inputs[0].name;
  const Shape input_shape = {1, 3, size, size};
  // Calibration measures the float model: upgrading to opset 13 first keeps value names
  // equal to those insert_qdq quantizes.
  QYOLO_ASSIGN_OR_RETURN(Graph source, upgrade_to_opset13(fp32));
  const std::vector<std::string> tensors = qdq_activation_tensors(source, placement);
  // The trimmed graph runs at any size and holds every quantized value (Detect's
  // post-processing quantizes nothing).
  QYOLO_ASSIGN_OR_RETURN(Graph trimmed, trim_at_heads(source));
  QYOLO_ASSIGN_OR_RETURN(trimmed, with_input_size(trimmed, size));
  QYOLO_ASSIGN_OR_RETURN(
      auto calibrator,
      Calibrator::create(trimmed, tensors, {{input_name, input_shape}}, options.num_bins));
  QatCalibration result;
  for (const auto& path : images) {
    auto image = read_image(path);
    if (!image) {
      result.skipped.push_back(image.status().message());
      continue;
    }
    Letterbox placement_info;
    const Image boxed = letterbox(*image, size, size, &placement_info);
    Tensor input(DType::kFloat32, input_shape);
    image_to_tensor(boxed, input, 0);
    QYOLO_RETURN_IF_ERROR(calibrator->add_batch({{input_name, std::move(input)}}));
    ++result.images;
    if (progress) progress(result.images + static_cast<int64_t>(result.skipped.size()));
  }
  if (result.images == 0) {
    return not_found("no readable image among ", images.size(), " calibration files");
  }
  const std::vector<float> amax = calibrator->amax(options);
  for (size_t k = 0; k < tensors.size(); ++k) result.amax[tensors[k]] = amax[k];
  QYOLO_ASSIGN_OR_RETURN(result.graph, insert_qdq(source, placement, result.amax));
  return result;
}

Expected<std::vector<std::string>> qat_calibrated_tensors(const Graph& fp32,
                                                          QdqPlacement placement) {
  QYOLO_ASSIGN_OR_RETURN(Graph source, upgrade_to_opset13(fp32));
  return qdq_activation_tensors(source, placement);
}

Expected<Graph> qat_graph_from_amax(const Graph& fp32, QdqPlacement placement,
                                    const std::map<std::string, float>& amax) {
  QYOLO_ASSIGN_OR_RETURN(Graph source, upgrade_to_opset13(fp32));
  return insert_qdq(source, placement, amax);
}

}  // namespace qyolo
