// The builder's passes over BuildGraph (qyolo/engine_builder.h). Precision follows the INT8
// reference backend's rules (docs/int8_reference.md) node for node, so that fusing afterwards
// changes where values live, never what they are.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "ops/conv_params.h"
#include "qyolo/engine_builder.h"

namespace qyolo {
namespace {

std::string join(const std::vector<std::string>& parts, const char* sep = " + ") {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// Consumers of each value among the live layers (residual reads included).
std::vector<std::vector<int>> consumers(const BuildGraph& g) {
  std::vector<std::vector<int>> users(g.values.size());
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const BuildLayer& l = g.layers[i];
    if (l.removed || l.op == BuildOp::kInputReformat) continue;
    for (int v : l.inputs) users[v].push_back(int(i));
    if (l.residual >= 0) users[l.residual].push_back(int(i));
  }
  return users;
}

int add_value(BuildGraph& g, BuildValue v) {
  g.values.push_back(std::move(v));
  const int index = int(g.values.size()) - 1;
  g.value_index[g.values.back().name] = index;
  return index;
}

Status import_node(BuildGraph& g, const Node& node, const ShapeInfo& shapes) {
  static const std::set<std::string> kSupported = {"Conv",   "Sigmoid", "Mul",   "Add",
                                                   "Concat", "MaxPool", "Resize"};
  if (!kSupported.count(node.op_type))
    return unsupported(node.label(), ": the engine has no layer for ", node.op_type,
                       " (Conv, Sigmoid, Mul, Add, Concat, MaxPool, nearest Resize)");
  BuildLayer layer;
  layer.node = &node;
  layer.nodes = {node.name};
  const size_t activation_inputs = node.op_type == "Conv" || node.op_type == "Resize" ? 1
                                   : node.op_type == "Sigmoid" || node.op_type == "MaxPool"
                                       ? 1
                                       : node.inputs.size();
  for (size_t k = 0; k < activation_inputs; ++k) {
    const int v = g.find(node.inputs[k]);
    if (v < 0)
      return unsupported(node.label(), ": input '", node.inputs[k],
                         "' is a constant; the engine takes activations only");
    layer.inputs.push_back(v);
  }
  const ValueInfo* out = shapes.find(node.outputs[0]);
  if (node.outputs.size() != 1 || !out || out->shape.size() != 4 || out->shape[0] != 1)
    return unsupported(node.label(), ": output must be one 1 x C x H x W tensor");
  const Shape& in0 = shapes.find(node.inputs[0])->shape;
  if (node.op_type == "Concat") {
    const int64_t axis = node.get_int("axis", 1);
    if (axis != 1 && axis != -3) return unsupported(node.label(), ": Concat on axis ", axis);
    layer.op = BuildOp::kConcat;
  } else if (node.op_type == "Add" || node.op_type == "Mul") {
    for (int v : layer.inputs)
      if (shapes.find(g.values[v].name)->shape != out->shape)
        return unsupported(node.label(), ": broadcasting ", node.op_type, " is not supported");
    layer.op = node.op_type == "Add" ? BuildOp::kAdd : BuildOp::kMul;
  } else if (node.op_type == "Sigmoid") {
    layer.op = BuildOp::kSigmoid;
  } else if (node.op_type == "MaxPool") {
    QYOLO_ASSIGN_OR_RETURN(auto win, ops::resolve_window(node, in0[2], in0[3], 1, 1));
    if (win.kernel_h != win.kernel_w || win.stride_h != win.stride_w ||
        win.pad_top != win.pad_left || win.pad_top != win.pad_bottom ||
        win.pad_top != win.pad_right || win.dilation_h != 1 || node.get_int("ceil_mode", 0) != 0)
      return unsupported(node.label(), ": only square, symmetric MaxPool windows are supported");
    layer.op = BuildOp::kMaxPool;
    layer.kernel = int(win.kernel_h);
    layer.stride = int(win.stride_h);
    layer.pad = int(win.pad_top);
  } else if (node.op_type == "Resize") {
    if (node.get_string("mode", "nearest") != "nearest" ||
        node.get_string("coordinate_transformation_mode", "half_pixel") != "asymmetric" ||
        node.get_string("nearest_mode", "round_prefer_floor") != "floor")
      return unsupported(node.label(), ": only nearest, asymmetric, floor Resize is supported");
    const int64_t fh = out->shape[2] / in0[2], fw = out->shape[3] / in0[3];
    if (fh != fw || fh < 1 || fh * in0[2] != out->shape[2] || fw * in0[3] != out->shape[3] ||
        out->shape[1] != in0[1])
      return unsupported(node.label(), ": Resize by a non-integer or unequal factor");
    layer.op = BuildOp::kResize;
    layer.factor = int(fh);
  } else {
    layer.op = BuildOp::kConv;
  }
  BuildValue value;
  value.name = node.outputs[0];
  value.channels = int(out->shape[1]);
  value.height = int(out->shape[2]);
  value.width = int(out->shape[3]);
  value.producer = int(g.layers.size());
  layer.output = add_value(g, value);
  g.layers.push_back(std::move(layer));
  return Status::ok();
}

}  // namespace

Expected<BuildGraph> import_graph(const Graph& model, const BuildOptions& options,
                                  std::vector<PassReport>& report) {
  auto graph = std::make_shared<Graph>(model);
  QYOLO_RETURN_IF_ERROR(topological_sort(*graph));
  std::map<std::string, Shape> input_shapes = options.input_shapes;
  for (const auto& input : graph->inputs) {
    Shape s = input_shapes.count(input.name) ? input_shapes[input.name] : input.shape;
    if (s.size() != 4 || s[1] < 1 || s[2] < 1 || s[3] < 1)
      return invalid_argument("input '", input.name,
                              "' must be N x C x H x W with known C, H, W, got ", shape_str(s));
    s[0] = 1;  // the engine's geometry is per image; the batch comes with each task
    input_shapes[input.name] = s;
  }
  BuildGraph g;
  QYOLO_ASSIGN_OR_RETURN(g.shapes, infer_shapes(*graph, input_shapes));

  // fold_constants: nodes whose every output shape inference could compute.
  std::vector<bool> keep(graph->nodes.size(), true);
  int folded = 0;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    bool constant = true;
    for (const auto& out : graph->nodes[i].outputs)
      constant = constant && (out.empty() || g.shapes.constant(out));
    if (constant) {
      keep[i] = false;
      ++folded;
    }
  }
  report.push_back({"fold_constants", str_cat(folded, " nodes evaluated at build time")});

  // trim_postprocess: what follows the last convolution (a full export's decode) is left to
  // the host, as a trimmed model's decode is; the values it read become the outputs.
  const auto users = consumers_by_value(*graph);
  std::set<std::string> fed;
  std::vector<bool> after_conv(graph->nodes.size(), false), reaches(graph->nodes.size(), false);
  for (size_t k = 0; k < graph->nodes.size(); ++k) {
    bool from_conv = graph->nodes[k].op_type == "Conv";
    for (const auto& in : graph->nodes[k].inputs) from_conv = from_conv || fed.count(in);
    if (!from_conv) continue;
    after_conv[k] = graph->nodes[k].op_type != "Conv";
    for (const auto& out : graph->nodes[k].outputs) fed.insert(out);
  }
  for (size_t k = graph->nodes.size(); k-- > 0;) {
    bool r = graph->nodes[k].op_type == "Conv";
    for (const auto& out : graph->nodes[k].outputs) {
      auto it = users.find(out);
      if (it != users.end())
        for (size_t u : it->second) r = r || reaches[u];
    }
    reaches[k] = r;
  }
  int trimmed = 0;
  std::vector<bool> trimmed_node(graph->nodes.size(), false);
  for (size_t k = 0; k < graph->nodes.size(); ++k) {
    if (!keep[k] || !after_conv[k] || reaches[k]) continue;
    trimmed_node[k] = true;
    keep[k] = false;
    ++trimmed;
  }
  std::set<std::string> kept_values, new_outputs;
  for (size_t k = 0; k < graph->nodes.size(); ++k)
    if (keep[k]) kept_values.insert(graph->nodes[k].outputs.begin(), graph->nodes[k].outputs.end());
  for (size_t k = 0; k < graph->nodes.size(); ++k)
    if (trimmed_node[k])
      for (const auto& in : graph->nodes[k].inputs)
        if (kept_values.count(in)) new_outputs.insert(in);
  std::vector<std::string> outputs;
  if (trimmed > 0) {
    outputs.assign(new_outputs.begin(), new_outputs.end());  // by name: P3, P4, P5 for YOLOv5
  } else {
    for (const auto& o : graph->outputs) outputs.push_back(o.name);
  }
  report.push_back(
      {"trim_postprocess", trimmed ? str_cat(trimmed,
                                             " nodes after the last convolution left to the host "
                                             "decode; outputs ",
                                             join(outputs, ", "))
                                   : std::string("nothing after the last convolution")});

  for (const auto& input : graph->inputs) {
    const Shape& s = input_shapes[input.name];
    BuildValue v;
    v.name = input.name;
    v.channels = int(s[1]);
    v.height = int(s[2]);
    v.width = int(s[3]);
    if (options.int8 && options.scales.count(input.name)) v.scale = options.scales.at(input.name);
    g.inputs.push_back(add_value(g, v));
  }
  for (size_t k = 0; k < graph->nodes.size(); ++k) {
    if (!keep[k]) continue;
    QYOLO_RETURN_IF_ERROR(import_node(g, graph->nodes[k], g.shapes));
    BuildValue& out = g.values[g.layers.back().output];
    if (options.int8 && options.scales.count(out.name)) out.scale = options.scales.at(out.name);
  }
  for (const auto& name : outputs) {
    const int v = g.find(name);
    if (v < 0) return not_found("output '", name, "' is not produced by a layer");
    g.values[v].graph_output = true;
    g.outputs.push_back(v);
  }
  g.graph = std::move(graph);
  return g;
}

// The reference's rules, layer by layer; an int8 Conv claims its SiLU's Sigmoid and Mul.
Status assign_precision(BuildGraph& g, const BuildOptions& options, PassReport& report) {
  const auto users = consumers(g);
  auto named = [&](int layer) {
    for (const auto& n : g.layers[layer].nodes)
      if (options.fp16_layers.count(n)) return true;
    return false;
  };
  auto scaled = [&](int v) { return g.values[v].scale > 0.0f; };
  std::vector<bool> absorbed(g.layers.size(), false);
  int int8_layers = 0, fp16_layers = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    BuildLayer& l = g.layers[i];
    if (absorbed[i]) continue;
    l.precision = ElementType::kFloat16;
    if (l.op == BuildOp::kConv) {
      // The SiLU the reference fuses: Sigmoid and Mul reading the Conv, nothing else does.
      int sig = -1, mul = -1;
      const BuildValue& y = g.values[l.output];
      if (options.fusion && !y.graph_output && users[l.output].size() == 2) {
        for (int u : users[l.output]) {
          if (g.layers[u].op == BuildOp::kSigmoid) sig = u;
          if (g.layers[u].op == BuildOp::kMul) mul = u;
        }
        if (sig >= 0 && mul >= 0) {
          const int s = g.layers[sig].output;
          const auto& mi = g.layers[mul].inputs;
          const bool shape = mi.size() == 2 && ((mi[0] == l.output && mi[1] == s) ||
                                                (mi[0] == s && mi[1] == l.output));
          if (g.values[s].graph_output || users[s] != std::vector<int>{mul} || !shape)
            sig = mul = -1;
        } else {
          sig = mul = -1;
        }
      }
      const int out = mul >= 0 ? g.layers[mul].output : l.output;
      const Node& node = *l.node;
      const Tensor* w = g.shapes.constant(node.inputs[1]);
      const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
      const Tensor* b = has_bias ? g.shapes.constant(node.inputs[2]) : nullptr;
      if (!w || w->dtype() != DType::kFloat32 ||
          (has_bias && (!b || b->dtype() != DType::kFloat32)))
        return unsupported(node.label(), ": weights are not constant float32");
      const std::string geometry =
          ops::conv_int8_unsupported(node, g.shapes.find(node.inputs[0])->shape, w->shape());
      if (!geometry.empty()) return unsupported(node.label(), ": ", geometry);
      std::string why;
      if (!options.int8) {
        why = "no --int8";
      } else if (named(int(i)) || (sig >= 0 && (named(sig) || named(mul)))) {
        why = "--layerPrecisions";
      } else if (!scaled(l.inputs[0]) || !scaled(out)) {
        why = str_cat("no scale for '",
                      scaled(l.inputs[0]) ? g.values[out].name : g.values[l.inputs[0]].name, "'");
      }
      if (why.empty()) {
        l.precision = ElementType::kInt8;
        if (sig >= 0) {
          absorbed[sig] = absorbed[mul] = true;
          g.layers[sig].precision = g.layers[mul].precision = ElementType::kInt8;
          g.layers[sig].reason = g.layers[mul].reason = "absorbed";
        }
      } else {
        l.reason = why;
      }
    } else if (!options.int8) {
      l.reason = "no --int8";
    } else if (named(int(i))) {
      l.reason = "--layerPrecisions";
    } else {
      bool all = scaled(l.output);
      for (int v : l.inputs) all = all && scaled(v);
      if (all) {
        l.precision = ElementType::kInt8;
      } else {
        l.reason = "no scale for an input or output";
      }
    }
    (l.precision == ElementType::kInt8 ? int8_layers : fp16_layers)++;
  }
  for (BuildLayer& l : g.layers) g.values[l.output].type = l.precision;
  report = {"assign_precision", str_cat(int8_layers, " layers int8, ", fp16_layers, " fp16")};
  return Status::ok();
}

Status fuse_conv_activation(BuildGraph& g, PassReport& report) {
  const auto users = consumers(g);
  int silu = 0, sigmoid = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    BuildLayer& l = g.layers[i];
    if (l.removed || l.op != BuildOp::kConv) continue;
    const int y = l.output;
    if (g.values[y].graph_output) continue;
    const auto& u = users[y];
    auto same = [&](int k) { return g.layers[k].precision == l.precision; };
    if (u.size() == 2) {
      int sig = -1, mul = -1;
      for (int k : u) {
        if (g.layers[k].op == BuildOp::kSigmoid) sig = k;
        if (g.layers[k].op == BuildOp::kMul) mul = k;
      }
      if (sig < 0 || mul < 0 || !same(sig) || !same(mul)) continue;
      const int s = g.layers[sig].output;
      if (g.values[s].graph_output || users[s] != std::vector<int>{mul}) continue;
      // An fp16 Conv's SiLU runs as the reference's three fp16 steps; an int8 one only when
      // the reference absorbed it (assign_precision marked it).
      if (l.precision == ElementType::kInt8 && g.layers[sig].reason != "absorbed") continue;
      l.activation = Activation::kSilu;
      l.activation_output = g.values[y].name;
      l.nodes.push_back(g.layers[sig].nodes[0]);
      l.nodes.push_back(g.layers[mul].nodes[0]);
      l.output = g.layers[mul].output;
      g.values[l.output].producer = int(i);
      g.layers[sig].removed = g.layers[mul].removed = true;
      ++silu;
    } else if (u.size() == 1 && g.layers[u[0]].op == BuildOp::kSigmoid && same(u[0]) &&
               g.layers[u[0]].reason != "absorbed") {
      BuildLayer& sig = g.layers[u[0]];
      if (l.precision == ElementType::kInt8 && !(g.values[y].scale > 0.0f)) continue;
      l.activation = Activation::kSigmoid;
      l.activation_output = g.values[y].name;
      l.nodes.push_back(sig.nodes[0]);
      l.output = sig.output;
      g.values[l.output].producer = int(i);
      sig.removed = true;
      ++sigmoid;
    }
  }
  report = {"fuse_conv_activation", str_cat(silu, " Conv+SiLU, ", sigmoid, " Conv+Sigmoid")};
  return Status::ok();
}

Status fuse_residual_add(BuildGraph& g, PassReport& report) {
  const auto users = consumers(g);
  int fused = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    BuildLayer& conv = g.layers[i];
    if (conv.removed || conv.op != BuildOp::kConv || conv.precision != ElementType::kInt8 ||
        conv.residual >= 0 || conv.activation == Activation::kSigmoid)
      continue;
    const int y = conv.output;
    if (g.values[y].graph_output || users[y].size() != 1) continue;
    BuildLayer& add = g.layers[users[y][0]];
    if (add.op != BuildOp::kAdd || add.precision != ElementType::kInt8 || add.inputs.size() != 2 ||
        add.inputs[0] == add.inputs[1])
      continue;
    const int other = add.inputs[0] == y ? add.inputs[1] : add.inputs[0];
    // The fused layer takes the Add's place, after both of its inputs exist.
    BuildLayer fused_layer = conv;
    fused_layer.residual = other;
    fused_layer.nodes.push_back(add.nodes[0]);
    fused_layer.output = add.output;
    fused_layer.activation_output = g.values[y].name;
    const int at = users[y][0];
    conv.removed = true;
    g.layers[at] = fused_layer;
    g.values[fused_layer.output].producer = at;
    ++fused;
  }
  report = {"fuse_residual_add", str_cat(fused, " Add fused into the producing Conv's epilogue")};
  return Status::ok();
}

Status insert_io_reformats(BuildGraph& g, const BuildOptions& options, PassReport& report) {
  const auto users = consumers(g);
  std::vector<BuildLayer> head;
  for (size_t k = 0; k < g.inputs.size(); ++k) {
    const int in = g.inputs[k];
    bool int8_user = false, fp16_user = false;
    for (int u : users[in])
      (g.layers[u].precision == ElementType::kInt8 ? int8_user : fp16_user) = true;
    BuildValue v = g.values[in];
    v.name = g.values[in].name + ":arena";
    v.producer = int(k);  // fixed up below
    const IoFormat f = options.input_format;
    if (f == IoFormat::kInt8Hwc4 || f == IoFormat::kInt8Chw32) {
      if (!(v.scale > 0.0f))
        return invalid_argument("input '", g.values[in].name, "': format ", io_format_name(f),
                                " needs its scale in the calibration cache");
      if (f == IoFormat::kInt8Hwc4 && v.channels > 4)
        return invalid_argument("input '", g.values[in].name, "' has ", v.channels,
                                " channels; int8:hwc4 holds at most 4");
      v.type = ElementType::kInt8;
    } else {
      v.type = int8_user && v.scale > 0.0f ? ElementType::kInt8 : ElementType::kFloat16;
    }
    (void)fp16_user;
    BuildLayer l;
    l.op = BuildOp::kInputReformat;
    l.nodes = {"reformat " + g.values[in].name};
    l.inputs = {int(k)};
    l.precision = v.type;
    l.output = add_value(g, v);
    for (BuildLayer& user : g.layers) {
      if (user.removed) continue;
      for (int& x : user.inputs)
        if (x == in) x = l.output;
      if (user.residual == in) user.residual = l.output;
    }
    head.push_back(std::move(l));
  }
  g.layers.insert(g.layers.begin(), head.begin(), head.end());
  for (size_t k = 0; k < g.outputs.size(); ++k) {
    const BuildValue& v = g.values[g.outputs[k]];
    if ((options.output_format == IoFormat::kInt8Chw32 ||
         options.output_format == IoFormat::kInt8Hwc4) &&
        !(v.scale > 0.0f))
      return invalid_argument("output '", v.name, "': format ",
                              io_format_name(options.output_format),
                              " needs its scale in the calibration cache");
    BuildLayer l;
    l.op = BuildOp::kOutputReformat;
    l.nodes = {"reformat " + v.name};
    l.inputs = {g.outputs[k]};
    l.output = int(k);
    l.precision = v.type;
    g.layers.push_back(std::move(l));
  }
  // Producer indices moved with the inserted layers.
  for (size_t i = 0; i < g.layers.size(); ++i)
    if (!g.layers[i].removed && g.layers[i].op != BuildOp::kOutputReformat)
      g.values[g.layers[i].output].producer = int(i);
  report = {"insert_io_reformats",
            str_cat(g.inputs.size(), " input (", io_format_name(options.input_format), "), ",
                    g.outputs.size(), " outputs (", io_format_name(options.output_format),
                    "); no reformat inside the network")};
  return Status::ok();
}

// Each value a layer reads in the other precision gets one converted copy, made before its
// first reader (the reference's quantize / dequantize steps).
Status insert_precision_converts(BuildGraph& g, PassReport& report) {
  std::map<std::pair<int, ElementType>, int> converted;
  std::vector<BuildLayer> out;
  int quantize = 0, dequantize = 0;
  for (BuildLayer& l : g.layers) {
    if (l.removed) continue;
    if (l.op != BuildOp::kInputReformat && l.op != BuildOp::kOutputReformat) {
      auto need = [&](int& v) {
        if (g.values[v].type == l.precision) return;
        auto key = std::make_pair(v, l.precision);
        auto it = converted.find(key);
        if (it == converted.end()) {
          BuildValue c = g.values[v];
          c.name = g.values[v].name + (l.precision == ElementType::kInt8 ? ":int8" : ":fp16");
          c.type = l.precision;
          c.graph_output = false;
          c.parent = -1;
          BuildLayer conv;
          conv.op = BuildOp::kConvert;
          conv.nodes = {(l.precision == ElementType::kInt8 ? "quantize " : "dequantize ") +
                        g.values[v].name};
          conv.inputs = {v};
          conv.precision = l.precision;
          conv.output = add_value(g, c);
          (l.precision == ElementType::kInt8 ? quantize : dequantize)++;
          it = converted.emplace(key, conv.output).first;
          out.push_back(std::move(conv));
        }
        v = it->second;
      };
      for (int& v : l.inputs) need(v);
      if (l.residual >= 0) need(l.residual);
    }
    out.push_back(std::move(l));
  }
  g.layers = std::move(out);
  for (size_t i = 0; i < g.layers.size(); ++i)
    if (g.layers[i].op != BuildOp::kOutputReformat) g.values[g.layers[i].output].producer = int(i);
  report = {"insert_precision_converts",
            str_cat(quantize, " quantize, ", dequantize, " dequantize at int8/fp16 edges")};
  return Status::ok();
}

Status remove_concat(BuildGraph& g, const BuildOptions& options, PassReport& report) {
  int concats = 0, in_place = 0, requantized = 0, fused_copies = 0, copies = 0;
  // Why each copy is one, in the report (what a fusion would have to handle to remove it).
  std::map<std::string, int> copy_reasons;
  std::vector<BuildOp> op_of;
  for (const BuildLayer& l : g.layers) op_of.push_back(l.op);
  const auto users = consumers(g);
  std::vector<int> moved_to(g.layers.size(), -1);  // index in `out` of each layer kept
  std::vector<BuildLayer> out;
  // At most one new slice value and one copy layer a Concat input: reserved, so the references
  // to values (`in`) and to kept layers (`maker`) below stay valid while both grow.
  size_t concat_inputs = 0;
  for (const BuildLayer& l : g.layers)
    if (l.op == BuildOp::kConcat) concat_inputs += l.inputs.size();
  out.reserve(g.layers.size() + concat_inputs);
  g.values.reserve(g.values.size() + concat_inputs);
  for (size_t i = 0; i < g.layers.size(); ++i) {
    BuildLayer l = std::move(g.layers[i]);
    if (l.op != BuildOp::kConcat) {
      moved_to[i] = int(out.size());
      out.push_back(std::move(l));
      continue;
    }
    ++concats;
    const BuildValue target = g.values[l.output];
    int offset = 0;
    // A new value: channels [offset, offset + channels) of the Concat's output.
    auto add_slice = [&](int channels) {
      BuildValue slice = target;
      slice.name = str_cat(target.name, "[", offset, ":", offset + channels, "]");
      slice.channels = channels;
      slice.parent = l.output;
      slice.channel_offset = offset;
      slice.graph_output = false;
      return add_value(g, slice);
    };
    std::set<int> seen;
    for (int v : l.inputs) {
      BuildValue& in = g.values[v];
      const bool aligned = offset % 16 == 0;
      const bool producer_ok = in.producer >= 0 && op_of[in.producer] != BuildOp::kInputReformat &&
                               op_of[in.producer] != BuildOp::kConcat;
      const bool same_numbers =
          in.type == target.type && (target.type != ElementType::kInt8 || in.scale == target.scale);
      // An int8 conv read by this Concat alone can round at its own scale and write the
      // Concat's: the reference's requantizing copy, in the conv's epilogue.
      // The layer that produced this input (already moved to `out`).
      BuildLayer* maker = in.producer >= 0 && moved_to[in.producer] >= 0
                             ? &out[moved_to[in.producer]]
                             : nullptr;
      const bool requantize_in_conv =
          maker && maker->op == BuildOp::kConv && maker->precision == ElementType::kInt8 &&
          in.type == ElementType::kInt8 && target.type == ElementType::kInt8 && in.scale > 0.0f &&
          target.scale > 0.0f && maker->residual < 0 && maker->activation != Activation::kSigmoid &&
          maker->conv_scale == 0.0f && users[v].size() == 1;
      const bool free = options.fusion && in.parent < 0 && !in.graph_output && producer_ok &&
                        aligned && !seen.count(v);
      // Otherwise an int8 Conv (not Sigmoid), MaxPool or Resize does the requantizing copy
      // itself: rounding at its own scale when the Concat is the only reader (requant_from),
      // or writing the slice besides its own tensor (also_output).
      const bool int8_copy_layer =
          options.fuse_concat_copies && maker && in.type == ElementType::kInt8 &&
          target.type == ElementType::kInt8 && in.scale > 0.0f && target.scale > 0.0f &&
          maker->requant_from == 0.0f &&
          maker->also_output < 0 && maker->precision == ElementType::kInt8 &&
          ((maker->op == BuildOp::kConv && maker->activation != Activation::kSigmoid) ||
           maker->op == BuildOp::kMaxPool || maker->op == BuildOp::kResize);
      const bool only_reader = users[v].size() == 1;
      if (free && (same_numbers || requantize_in_conv)) {
        if (!same_numbers) {
          maker->conv_scale = in.scale;
          in.scale = target.scale;
          ++requantized;
        }
        in.parent = l.output;
        in.channel_offset = offset;
        ++in_place;
      } else if (free && int8_copy_layer && only_reader && maker->conv_scale == 0.0f) {
        maker->requant_from = in.scale;
        in.scale = target.scale;
        in.parent = l.output;
        in.channel_offset = offset;
        ++in_place;
        ++fused_copies;
      } else if (free && int8_copy_layer && !only_reader) {
        maker->also_output = add_slice(in.channels);  // its producer: set after the loop
        ++in_place;
        ++fused_copies;
      } else {
        const int slice = add_slice(in.channels);
        BuildLayer copy;
        copy.op = BuildOp::kConvert;
        copy.nodes = {
            str_cat(in.type == target.type && in.scale == target.scale ? "copy " : "requantize ",
                    in.name, " into ", l.nodes[0])};
        copy.inputs = {v};
        copy.precision = target.type;
        copy.output = slice;
        out.push_back(std::move(copy));
        ++copies;
        const BuildOp producer_op = in.producer >= 0 ? op_of[in.producer] : BuildOp::kInputReformat;
        std::string reason;
        if (!options.fusion) reason = "fusion off";
        else if (!options.fuse_concat_copies && free) reason = "QYOLO_KEEP_CONCAT_COPIES=1";
        else if (!free) reason = "layout";
        else if (maker && (maker->requant_from > 0.0f || maker->also_output >= 0 ||
                           maker->conv_scale > 0.0f))
          reason = "producer writes another copy already";
        else if (in.type != ElementType::kInt8 || target.type != ElementType::kInt8)
          reason = "not int8";
        else if (producer_op == BuildOp::kConv) reason = "from a Conv+Sigmoid";
        else if (producer_op == BuildOp::kAdd) reason = "from an unfused Add";
        else if (producer_op == BuildOp::kMul) reason = "from a Mul";
        else if (producer_op == BuildOp::kSigmoid) reason = "from a Sigmoid";
        else reason = "other";
        ++copy_reasons[reason];
      }
      seen.insert(v);
      offset += in.channels;
    }
    l.removed = true;  // its output is the buffer its inputs were written into
  }
  g.layers = std::move(out);
  for (size_t i = 0; i < g.layers.size(); ++i) {
    if (g.layers[i].op != BuildOp::kOutputReformat) g.values[g.layers[i].output].producer = int(i);
    if (g.layers[i].also_output >= 0) g.values[g.layers[i].also_output].producer = int(i);
  }
  std::string why;
  for (const auto& [reason, count] : copy_reasons)
    why += str_cat(why.empty() ? "" : ", ", count, " ", reason);
  report = {"remove_concat",
            str_cat(concats, " Concat removed: ", in_place,
                    " inputs written in place into their channel slice (", requantized,
                    " of them by a conv rounding at its own scale first, ", fused_copies,
                    " by their producer requantizing as the reference's copy does), ", copies,
                    " copied", copies ? " (" + why + ")" : std::string())};
  return Status::ok();
}

}  // namespace qyolo
