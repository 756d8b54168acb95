// QatModel: a qyolo graph as a trainable LibTorch computation. Shape arithmetic is folded by
// qyolo's shape inference once; what is left runs as torch ops so autograd reaches every
// Conv weight. Q/DQ pairs become fake quantization whose gradient passes straight through
// inside the clipping range (LibTorch's fake-quantize ops).
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "qat/qat_internal.h"

namespace qyolo {
namespace {

using Kind = QatModel::Impl::Kind;

const std::unordered_map<std::string, Kind>& op_kinds() {
  static const std::unordered_map<std::string, Kind> kinds = {
      {"Conv", Kind::kConv},
      {"BatchNormalization", Kind::kBatchNorm},
      {"Sigmoid", Kind::kSigmoid},
      {"Relu", Kind::kRelu},
      {"LeakyRelu", Kind::kLeakyRelu},
      {"Mul", Kind::kMul},
      {"Add", Kind::kAdd},
      {"Sub", Kind::kSub},
      {"Div", Kind::kDiv},
      {"Pow", Kind::kPow},
      {"Concat", Kind::kConcat},
      {"Split", Kind::kSplit},
      {"Reshape", Kind::kReshape},
      {"Transpose", Kind::kTranspose},
      {"Slice", Kind::kSlice},
      {"MaxPool", Kind::kMaxPool},
      {"Resize", Kind::kResize},
      {"Identity", Kind::kIdentity},
      {"QuantizeLinear", Kind::kFakeQuant},
      {"DequantizeLinear", Kind::kDequantize},
  };
  return kinds;
}

torch::ScalarType torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return torch::kFloat32;
    case DType::kFloat64:
      return torch::kFloat64;
    case DType::kInt8:
      return torch::kInt8;
    case DType::kUInt8:
      return torch::kUInt8;
    case DType::kInt32:
      return torch::kInt32;
    case DType::kInt64:
      return torch::kInt64;
    case DType::kBool:
      return torch::kBool;
    default:
      return torch::kFloat32;
  }
}

// Symmetric ONNX pads [b0, b1, e0, e1] -> torch padding; asymmetric ones need an explicit pad.
bool symmetric_pads(const std::vector<int64_t>& pads) {
  const size_t half = pads.size() / 2;
  for (size_t k = 0; k < half; ++k) {
    if (pads[k] != pads[k + half]) return false;
  }
  return true;
}

torch::Tensor pad_explicitly(const torch::Tensor& x, const std::vector<int64_t>& pads,
                             double value) {
  // torch pads the last dimension first: [w_begin, w_end, h_begin, h_end].
  const size_t half = pads.size() / 2;
  std::vector<int64_t> torch_pads;
  for (size_t k = half; k-- > 0;) {
    torch_pads.push_back(pads[k]);
    torch_pads.push_back(pads[k + half]);
  }
  return torch::constant_pad_nd(x, torch_pads, value);
}

}  // namespace

torch::Tensor to_torch(const Tensor& tensor) {
  std::vector<int64_t> sizes(tensor.shape().begin(), tensor.shape().end());
  if (tensor.dtype() == DType::kFloat16) {
    std::vector<float> values(static_cast<size_t>(tensor.numel()));
    for (int64_t i = 0; i < tensor.numel(); ++i)
      values[i] = half_to_float(tensor.data<uint16_t>()[i]);
    return torch::from_blob(values.data(), sizes, torch::kFloat32).clone();
  }
  return torch::from_blob(const_cast<void*>(tensor.raw()), sizes, torch_dtype(tensor.dtype()))
      .clone();
}

Expected<Tensor> from_torch(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.detach().to(torch::kCPU).to(torch::kFloat32).contiguous();
  Shape shape(t.sizes().begin(), t.sizes().end());
  Tensor out(DType::kFloat32, shape);
  std::memcpy(out.raw(), t.data_ptr<float>(), out.nbytes());
  return out;
}

torch::Tensor weight_scales(const torch::Tensor& weight) {
  const torch::Tensor flat = weight.detach().reshape({weight.size(0), -1});
  return std::get<0>(flat.abs().max(1)).clamp_min(1e-8f) / 127.0f;
}

std::vector<torch::Tensor> QatModel::Impl::run(const torch::Tensor& input) const {
  std::vector<torch::Tensor> values = constants;
  for (size_t k = 0; k < parameters.size(); ++k) values[parameter_ids[k]] = parameters[k];
  values[input_id] = input;
  auto in = [&](const Step& step, size_t k) -> const torch::Tensor& {
    return values[step.inputs[k]];
  };
  for (const Step& step : steps) {
    const Node& node = *step.node;
    torch::Tensor out;
    switch (step.kind) {
      case Kind::kStatic:
        continue;
      case Kind::kConv: {
        torch::Tensor x = in(step, 0);
        std::vector<int64_t> pads = node.get_ints("pads", {0, 0, 0, 0});
        std::vector<int64_t> padding(pads.begin(), pads.begin() + pads.size() / 2);
        if (!symmetric_pads(pads)) {
          x = pad_explicitly(x, pads, 0.0);
          std::fill(padding.begin(), padding.end(), 0);
        }
        torch::Tensor bias =
            step.inputs.size() > 2 && step.inputs[2] >= 0 ? in(step, 2) : torch::Tensor();
        out = torch::conv2d(x, in(step, 1), bias, node.get_ints("strides", {1, 1}), padding,
                            node.get_ints("dilations", {1, 1}), node.get_int("group", 1));
        break;
      }
      case Kind::kBatchNorm:
        out = torch::batch_norm(in(step, 0), in(step, 1), in(step, 2), in(step, 3), in(step, 4),
                                false, 0.0, node.get_float("epsilon", 1e-5f), false);
        break;
      case Kind::kSigmoid:
        out = torch::sigmoid(in(step, 0));
        break;
      case Kind::kRelu:
        out = torch::relu(in(step, 0));
        break;
      case Kind::kLeakyRelu:
        out = torch::leaky_relu(in(step, 0), node.get_float("alpha", 0.01f));
        break;
      case Kind::kMul:
        out = in(step, 0) * in(step, 1);
        break;
      case Kind::kAdd:
        out = in(step, 0) + in(step, 1);
        break;
      case Kind::kSub:
        out = in(step, 0) - in(step, 1);
        break;
      case Kind::kDiv:
        out = in(step, 0) / in(step, 1);
        break;
      case Kind::kPow:
        out = torch::pow(in(step, 0), in(step, 1));
        break;
      case Kind::kIdentity:
      case Kind::kDequantize:
        out = in(step, 0);
        break;
      case Kind::kConcat: {
        std::vector<torch::Tensor> parts;
        for (size_t k = 0; k < step.inputs.size(); ++k) parts.push_back(in(step, k));
        out = torch::cat(parts, node.get_int("axis", 0));
        break;
      }
      case Kind::kSplit: {
        auto parts = torch::split_with_sizes(in(step, 0), step.ints, node.get_int("axis", 0));
        for (size_t k = 0; k < step.outputs.size(); ++k) values[step.outputs[k]] = parts[k];
        continue;
      }
      case Kind::kReshape: {
        const torch::Tensor& x = in(step, 0);
        std::vector<int64_t> shape = step.ints;
        for (size_t k = 0; k < shape.size(); ++k) {
          if (shape[k] == 0) shape[k] = x.size(static_cast<int64_t>(k));
        }
        out = x.reshape(shape);
        break;
      }
      case Kind::kTranspose:
        out = in(step, 0).permute(step.ints);
        break;
      case Kind::kSlice: {
        // ints: (axis, start, end, step) per sliced axis.
        out = in(step, 0);
        for (size_t k = 0; k + 3 < step.ints.size(); k += 4) {
          const int64_t axis = step.ints[k], size = out.size(axis);
          auto clampi = [&](int64_t v) {
            if (v < 0) v += size;
            return std::clamp<int64_t>(v, 0, size);
          };
          out =
              out.slice(axis, clampi(step.ints[k + 1]), clampi(step.ints[k + 2]), step.ints[k + 3]);
        }
        break;
      }
      case Kind::kMaxPool: {
        torch::Tensor x = in(step, 0);
        std::vector<int64_t> pads = node.get_ints("pads", {0, 0, 0, 0});
        std::vector<int64_t> padding(pads.begin(), pads.begin() + pads.size() / 2);
        if (!symmetric_pads(pads)) {
          x = pad_explicitly(x, pads, -std::numeric_limits<double>::infinity());
          std::fill(padding.begin(), padding.end(), 0);
        }
        const auto kernel = node.get_ints("kernel_shape");
        out = torch::max_pool2d(x, kernel, node.get_ints("strides", {1, 1}), padding,
                                node.get_ints("dilations", {1, 1}), node.get_int("ceil_mode", 0));
        break;
      }
      case Kind::kResize:
        out = torch::upsample_nearest2d(in(step, 0), step.ints);
        break;
      case Kind::kFakeQuant:
        out = torch::fake_quantize_per_tensor_affine(in(step, 0), step.scale, 0, -128, 127);
        break;
      case Kind::kWeightFakeQuant: {
        const torch::Tensor& w = in(step, 0);
        const torch::Tensor scale = weight_scales(w);
        const torch::Tensor zero = torch::zeros({w.size(0)}, w.options().dtype(torch::kInt32));
        out = torch::fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127);
        break;
      }
    }
    values[step.outputs[0]] = out;
  }
  std::vector<torch::Tensor> outputs;
  for (int id : output_ids) outputs.push_back(values[id]);
  return outputs;
}

QatModel::QatModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
QatModel::~QatModel() = default;

bool qat_cuda_available() { return torch::cuda::is_available(); }

Expected<std::unique_ptr<QatModel>> QatModel::create(const Graph& graph,
                                                     const std::string& device) {
  auto impl = std::make_unique<Impl>();
  // "cuda:N" is what a data-parallel rank asks for: the GPU of its LOCAL_RANK.
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      return unsupported(
          "--device cuda: this LibTorch has no CUDA (or sees no GPU); build with a CUDA "
          "LibTorch (docs/qat.md) or use --device cpu");
    }
    const std::string index = device == "cuda" ? "0" : device.substr(5);
    if (index.empty() || index.size() > 9 ||
        index.find_first_not_of("0123456789") != std::string::npos ||
        std::stoll(index) >= torch::cuda::device_count()) {
      return invalid_argument("device '", device, "': this machine has ",
                              torch::cuda::device_count(), " GPUs");
    }
    impl->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(index)));
  } else if (device != "cpu") {
    return invalid_argument("device '", device, "': expected cpu or cuda");
  }
  if (graph.inputs.size() != 1) {
    return unsupported("graph '", graph.name, "' has ", graph.inputs.size(),
                       " inputs; the trainer takes one image input");
  }
  for (const Node& node : graph.nodes) {
    if (!op_kinds().count(node.op_type) && node.op_type != "Constant" && node.op_type != "Shape" &&
        node.op_type != "Gather" && node.op_type != "Unsqueeze" && node.op_type != "Cast") {
      return unsupported(node.label(), ": the QAT trainer has no ", node.op_type);
    }
  }
  QYOLO_ASSIGN_OR_RETURN(ShapeInfo info, infer_shapes(graph));
  impl->graph = graph;
  const Graph& g = impl->graph;

  // Which float initializers train: Conv weights and biases (directly or through a weight
  // Q/DQ) and BatchNormalization's scale and shift.
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& out : g.nodes[i].outputs) producer[out] = i;
  }
  std::set<std::string> trainable;
  auto mark = [&](const std::string& value) {
    const Tensor* t = g.find_initializer(value);
    if (t && t->dtype() == DType::kFloat32) trainable.insert(value);
  };
  for (const Node& node : g.nodes) {
    if (node.op_type == "Conv") {
      for (size_t k = 1; k < node.inputs.size() && k < 3; ++k) {
        mark(node.inputs[k]);
        auto dq = producer.find(node.inputs[k]);
        if (dq == producer.end() || g.nodes[dq->second].op_type != "DequantizeLinear") continue;
        auto q = producer.find(g.nodes[dq->second].inputs[0]);
        if (q != producer.end() && g.nodes[q->second].op_type == "QuantizeLinear")
          mark(g.nodes[q->second].inputs[0]);
      }
    } else if (node.op_type == "BatchNormalization" && node.inputs.size() >= 3) {
      mark(node.inputs[1]);
      mark(node.inputs[2]);
    }
  }

  std::unordered_map<std::string, int> ids;
  auto id_of = [&](const std::string& name) -> int {
    if (name.empty()) return -1;
    auto [it, inserted] = ids.emplace(name, static_cast<int>(impl->value_names.size()));
    if (inserted) {
      impl->value_names.push_back(name);
      impl->constants.emplace_back();
    }
    return it->second;
  };
  std::set<int> dynamic;
  impl->input_id = id_of(g.inputs[0].name);
  dynamic.insert(impl->input_id);
  for (const auto& [name, tensor] : g.initializers) {
    const int id = id_of(name);
    impl->constants[id] = to_torch(tensor).to(impl->device);
    if (trainable.count(name)) {
      impl->parameter_names.push_back(name);
      impl->parameter_ids.push_back(id);
      impl->parameters.push_back(impl->constants[id].clone().set_requires_grad(true));
      dynamic.insert(id);
    }
  }
  std::set<int> from_quantize;  // Q outputs: a DQ reading one passes it on
  for (const Node& node : g.nodes) {
    Impl::Step step;
    step.node = &node;
    bool any_dynamic = false;
    for (const auto& name : node.inputs) {
      step.inputs.push_back(id_of(name));
      if (step.inputs.back() >= 0 && dynamic.count(step.inputs.back())) any_dynamic = true;
    }
    for (const auto& name : node.outputs) step.outputs.push_back(id_of(name));
    const bool is_shape = node.op_type == "Shape";
    if (!any_dynamic || is_shape) {
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        const Tensor* value = info.constant(node.outputs[k]);
        if (!value) {
          return unsupported(node.label(), ": output '", node.outputs[k],
                             "' is constant but shape inference could not fold it");
        }
        impl->constants[step.outputs[k]] = to_torch(*value).to(impl->device);
      }
      impl->steps.push_back(std::move(step));
      continue;
    }
    if (!op_kinds().count(node.op_type)) {
      return unsupported(node.label(), ": the QAT trainer runs ", node.op_type,
                         " only on constants");
    }
    step.kind = op_kinds().at(node.op_type);
    for (int id : step.outputs) dynamic.insert(id);
    auto static_input = [&](size_t k) -> const torch::Tensor* {
      if (k >= step.inputs.size() || step.inputs[k] < 0 || dynamic.count(step.inputs[k]))
        return nullptr;
      return &impl->constants[step.inputs[k]];
    };
    auto static_ints = [&](size_t k) -> std::vector<int64_t> {
      const torch::Tensor* t = static_input(k);
      if (!t) return {};
      torch::Tensor v = t->to(torch::kCPU).to(torch::kInt64).contiguous();
      return std::vector<int64_t>(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
    };
    const ValueInfo* out_info = info.find(node.outputs[0]);
    switch (step.kind) {
      case Kind::kConv:
        if (node.get_string("auto_pad", "NOTSET") != "NOTSET" ||
            node.get_ints("kernel_shape", {1, 1}).size() != 2) {
          return unsupported(node.label(), ": the QAT trainer takes 2-D Convs with explicit pads");
        }
        break;
      case Kind::kMaxPool:
        if (node.get_string("auto_pad", "NOTSET") != "NOTSET" || node.outputs.size() > 1)
          return unsupported(node.label(), ": the QAT trainer takes MaxPool with explicit pads");
        break;
      case Kind::kSplit: {
        std::vector<int64_t> sizes =
            node.has_attribute("split") ? node.get_ints("split") : static_ints(1);
        if (sizes.empty()) {
          for (const auto& name : node.outputs) {
            const ValueInfo* v = info.find(name);
            int64_t axis = node.get_int("axis", 0);
            if (!v) return unsupported(node.label(), ": unknown output shape");
            if (axis < 0) axis += static_cast<int64_t>(v->shape.size());
            sizes.push_back(v->shape[axis]);
          }
        }
        step.ints = sizes;
        break;
      }
      case Kind::kReshape:
        step.ints = static_ints(1);
        if (step.ints.empty())
          return unsupported(node.label(), ": the QAT trainer needs a constant Reshape shape");
        break;
      case Kind::kTranspose:
        step.ints = node.get_ints("perm");
        if (step.ints.empty()) return unsupported(node.label(), ": Transpose without perm");
        break;
      case Kind::kSlice: {
        const auto starts = static_ints(1), ends = static_ints(2);
        auto axes = static_ints(3), steps = static_ints(4);
        if (starts.empty() || ends.size() != starts.size())
          return unsupported(node.label(), ": the QAT trainer needs constant Slice bounds");
        for (size_t k = 0; k < starts.size(); ++k) {
          int64_t axis = k < axes.size() ? axes[k] : static_cast<int64_t>(k);
          if (axis < 0 && out_info) axis += static_cast<int64_t>(out_info->shape.size());
          step.ints.insert(step.ints.end(), {axis, starts[k], std::min(ends[k], int64_t{1} << 62),
                                             k < steps.size() ? steps[k] : 1});
        }
        break;
      }
      case Kind::kResize: {
        const bool floor_nearest =
            node.get_string("mode", "nearest") == "nearest" &&
            node.get_string("coordinate_transformation_mode", "half_pixel") == "asymmetric" &&
            node.get_string("nearest_mode", "round_prefer_floor") == "floor";
        if (!floor_nearest || !out_info || out_info->shape.size() != 4) {
          return unsupported(node.label(),
                             ": the QAT trainer takes 4-D nearest Resize "
                             "(asymmetric, floor), as YOLOv5 exports it");
        }
        step.ints = {out_info->shape[2], out_info->shape[3]};
        break;
      }
      case Kind::kFakeQuant: {
        const torch::Tensor* scale = static_input(1);
        const torch::Tensor* zero = static_input(2);
        if (!scale || (zero && zero->ne(0).any().item<bool>()) ||
            (zero && zero->scalar_type() != torch::kInt8)) {
          return unsupported(node.label(),
                             ": the QAT trainer takes int8 Q/DQ with zero point 0 "
                             "and a constant scale");
        }
        if (trainable.count(node.inputs[0])) {
          if (node.get_int("axis", 1) != 0)
            return unsupported(node.label(), ": weight Q/DQ must be per channel on axis 0");
          step.kind = Kind::kWeightFakeQuant;
        } else if (scale->numel() != 1) {
          return unsupported(node.label(), ": activation Q/DQ must be per tensor");
        } else {
          step.scale = scale->to(torch::kCPU).to(torch::kFloat64).item<double>();
        }
        from_quantize.insert(step.outputs[0]);
        break;
      }
      case Kind::kDequantize:
        if (!from_quantize.count(step.inputs[0]))
          return unsupported(node.label(), ": DequantizeLinear that no QuantizeLinear feeds");
        break;
      default:
        break;
    }
    impl->steps.push_back(std::move(step));
  }
  for (const auto& output : g.outputs) {
    auto it = ids.find(output.name);
    if (it == ids.end())
      return not_found("graph output '", output.name, "' is produced by no node");
    impl->output_ids.push_back(it->second);
  }
  return std::unique_ptr<QatModel>(new QatModel(std::move(impl)));
}

Expected<std::vector<Tensor>> QatModel::forward(const Tensor& input) {
  if (input.dtype() != DType::kFloat32 || input.rank() != 4 || input.shape()[1] != 3) {
    return invalid_argument("QAT model input is ", dtype_name(input.dtype()), " ",
                            shape_str(input.shape()), "; expected float32 N x 3 x H x W");
  }
  try {
    torch::NoGradGuard no_grad;
    auto outputs = impl_->run(to_torch(input).to(impl_->device));
    std::vector<Tensor> result;
    for (const auto& t : outputs) {
      QYOLO_ASSIGN_OR_RETURN(Tensor value, from_torch(t));
      result.push_back(std::move(value));
    }
    return result;
  } catch (const c10::Error& e) {
    return internal_error("QAT forward: ", e.what_without_backtrace());
  }
}

Expected<Graph> QatModel::to_graph() const {
  Graph out = impl_->graph;
  for (size_t k = 0; k < impl_->parameters.size(); ++k) {
    QYOLO_ASSIGN_OR_RETURN(out.initializers[impl_->parameter_names[k]],
                           from_torch(impl_->parameters[k]));
  }
  // Weight Q/DQ scales follow the weights, as the translator's max calibration expects.
  for (const auto& step : impl_->steps) {
    if (step.kind != Kind::kWeightFakeQuant) continue;
    const std::string& weight = step.node->inputs[0];
    const torch::Tensor scales =
        weight_scales(impl_->parameters[std::find(impl_->parameter_names.begin(),
                                                  impl_->parameter_names.end(), weight) -
                                        impl_->parameter_names.begin()]);
    QYOLO_ASSIGN_OR_RETURN(Tensor value, from_torch(scales));
    out.initializers[step.node->inputs[1]] = std::move(value);
    // The DQ after it names the same scale initializer in insert_qdq's graphs; others too.
  }
  for (auto& node : out.nodes) {
    if (node.op_type != "DequantizeLinear") continue;
    for (const auto& step : impl_->steps) {
      if (step.kind == Kind::kWeightFakeQuant && step.node->outputs[0] == node.inputs[0])
        node.inputs[1] = step.node->inputs[1];
    }
  }
  return out;
}

int64_t QatModel::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->parameters) n += p.numel();
  return n;
}

}  // namespace qyolo
