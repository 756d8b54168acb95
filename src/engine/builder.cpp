// build_engine: the passes in order, then the lowering of BuildGraph into an Engine (tensors
// in an arena, packed weights) and the liveness-based memory plan.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/conv_params.h"
#include "qyolo/engine_builder.h"

namespace qyolo {

uint64_t plan_arena(std::vector<ArenaBuffer>& buffers) {
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return buffers[a].bytes_per_image > buffers[b].bytes_per_image;
  });
  std::vector<size_t> placed;
  uint64_t peak = 0;
  for (size_t i : order) {
    ArenaBuffer& b = buffers[i];
    std::vector<const ArenaBuffer*> live;
    for (size_t p : placed) {
      const ArenaBuffer& o = buffers[p];
      if (o.first_layer <= b.last_layer && b.first_layer <= o.last_layer) live.push_back(&o);
    }
    std::vector<uint64_t> candidates = {0};
    for (const ArenaBuffer* o : live) candidates.push_back(o->offset + o->bytes_per_image);
    std::sort(candidates.begin(), candidates.end());
    for (uint64_t at : candidates) {
      const bool free = std::none_of(live.begin(), live.end(), [&](const ArenaBuffer* o) {
        return at < o->offset + o->bytes_per_image && o->offset < at + b.bytes_per_image;
      });
      if (free) {
        b.offset = at;
        break;
      }
    }
    peak = std::max(peak, b.offset + b.bytes_per_image);
    placed.push_back(i);
  }
  return peak;
}

namespace {

// The reference's weight quantization: max|W[c]| / 127 per output channel, OHWI int8.
void quantize_weights(const Tensor& w, std::vector<int8_t>& ohwi, std::vector<float>& scales) {
  const Shape& s = w.shape();
  const int64_t out = s[0], in = s[1], kh = s[2], kw = s[3];
  const float* src = w.data<float>();
  ohwi.assign(size_t(w.numel()), 0);
  scales.assign(size_t(out), 1.0f);
  for (int64_t o = 0; o < out; ++o) {
    float amax = 0;
    for (int64_t i = 0; i < in * kh * kw; ++i)
      amax = std::max(amax, std::abs(src[o * in * kh * kw + i]));
    const float scale = amax > 0 ? amax / 127.0f : 1.0f;
    scales[o] = scale;
    for (int64_t c = 0; c < in; ++c)
      for (int64_t y = 0; y < kh; ++y)
        for (int64_t x = 0; x < kw; ++x)
          ohwi[((o * kh + y) * kw + x) * in + c] =
              quantize_rne(src[((o * in + c) * kh + y) * kw + x], scale);
  }
}

std::string layer_op(const BuildGraph& g, const BuildLayer& l) {
  switch (l.op) {
    case BuildOp::kConv:
      return std::string("Conv") +
             (l.activation == Activation::kSilu      ? "+SiLU"
              : l.activation == Activation::kSigmoid ? "+Sigmoid"
                                                     : "") +
             (l.residual >= 0 ? "+Add" : "");
    case BuildOp::kConvert: {
      const BuildValue& in = g.values[l.inputs[0]];
      const BuildValue& out = g.values[l.output];
      if (in.type == ElementType::kInt8 && out.type == ElementType::kInt8)
        return in.scale == out.scale ? "Copy" : "Requantize";
      if (out.type == ElementType::kInt8) return "Quantize";
      if (in.type == ElementType::kInt8) return "Dequantize";
      return "Copy";
    }
    case BuildOp::kInputReformat:
    case BuildOp::kOutputReformat:
      return "Reformat";
    case BuildOp::kSigmoid:
      return "Sigmoid";
    case BuildOp::kMul:
      return "Mul";
    case BuildOp::kAdd:
      return "Add";
    case BuildOp::kMaxPool:
      return "MaxPool";
    case BuildOp::kResize:
      return "Resize";
    case BuildOp::kConcat:
      return "Concat";
  }
  return "?";
}

LayerKind layer_kind(BuildOp op) {
  switch (op) {
    case BuildOp::kConv:
      return LayerKind::kConv;
    case BuildOp::kSigmoid:
      return LayerKind::kSigmoid;
    case BuildOp::kMul:
      return LayerKind::kMul;
    case BuildOp::kAdd:
      return LayerKind::kAdd;
    case BuildOp::kMaxPool:
      return LayerKind::kMaxPool;
    case BuildOp::kResize:
      return LayerKind::kResizeNearest;
    case BuildOp::kInputReformat:
      return LayerKind::kInputReformat;
    case BuildOp::kOutputReformat:
      return LayerKind::kOutputReformat;
    case BuildOp::kConvert:
    case BuildOp::kConcat:
      break;
  }
  return LayerKind::kConvert;
}

std::array<int8_t, 256> sigmoid_table(float input_scale, float output_scale) {
  std::array<int8_t, 256> table{};
  for (int q = -128; q < 128; ++q) {
    const float x = float(q) * input_scale;
    table[q + 128] = quantize_rne(1.0f / (1.0f + std::exp(-x)), output_scale);
  }
  return table;
}

Status lower_conv(const BuildGraph& g, const BuildLayer& b, const Engine& e, EngineLayer& l,
                  Engine& out) {
  const Node& node = *b.node;
  const Tensor& w = *g.shapes.constant(node.inputs[1]);
  const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
  const Tensor* bias = has_bias ? g.shapes.constant(node.inputs[2]) : nullptr;
  const Shape& xs = g.shapes.find(node.inputs[0])->shape;
  const Shape& ws = w.shape();
  QYOLO_ASSIGN_OR_RETURN(auto win, ops::resolve_window(node, xs[2], xs[3], ws[2], ws[3]));
  l.shape = {1,          int(xs[1]), int(xs[2]),        int(xs[3]),
             int(ws[0]), int(ws[2]), int(win.stride_h), int(win.pad_top)};
  l.activation = b.activation;
  const int cout = int(ws[0]);
  std::vector<float> bias_values(cout, 0.0f);
  if (bias) std::copy(bias->data<float>(), bias->data<float>() + cout, bias_values.begin());
  if (b.precision == ElementType::kInt8) {
    std::vector<int8_t> ohwi;
    std::vector<float> scales;
    quantize_weights(w, ohwi, scales);
    l.weight_format = conv_int8_weight_format(l.shape, e.tensors[l.inputs[0]].layout);
    const auto packed = pack_conv_int8_weights(l.shape, l.weight_format, ohwi.data());
    l.weights = out.add_weights(packed.data(), packed.size());
    l.weight_scales = out.add_weights(scales.data(), scales.size() * 4);
    l.bias = out.add_weights(bias_values.data(), bias_values.size() * 4);
    if (b.activation == Activation::kSigmoid || b.residual >= 0) {
      const int mid = g.find(b.activation_output);
      l.conv_scale = g.values[mid].scale;
    } else if (b.conv_scale > 0.0f) {  // a Concat input requantized in place (remove_concat)
      l.conv_scale = b.conv_scale;
    }
    if (b.activation == Activation::kSigmoid) {
      const auto table = sigmoid_table(l.conv_scale, e.tensors[l.output].scale);
      l.table = out.add_weights(table.data(), table.size());
    }
  } else {
    // fp16: half weights [in][kh][kw][out], so the CPU loop runs over output channels.
    const int cin = int(ws[1]), k = int(ws[2]);
    std::vector<uint16_t> half(size_t(w.numel()));
    const float* src = w.data<float>();
    for (int o = 0; o < cout; ++o)
      for (int c = 0; c < cin; ++c)
        for (int y = 0; y < k; ++y)
          for (int x = 0; x < k; ++x)
            half[((size_t(c) * k + y) * k + x) * cout + o] =
                float_to_half(src[((size_t(o) * cin + c) * k + y) * k + x]);
    std::vector<uint16_t> half_bias(cout);
    for (int o = 0; o < cout; ++o) half_bias[o] = float_to_half(bias_values[o]);
    l.weights = out.add_weights(half.data(), half.size() * 2);
    l.bias = out.add_weights(half_bias.data(), half_bias.size() * 2);
  }
  return Status::ok();
}

Expected<Engine> lower(const BuildGraph& g, const BuildOptions& options,
                       uint64_t& unplanned_bytes) {
  Engine e;
  e.target = options.target;
  e.qyolo_version = options.qyolo_version;
  e.source = options.source;
  e.max_batch = options.max_batch;
  std::vector<const BuildLayer*> layers;
  for (const BuildLayer& l : g.layers)
    if (!l.removed) layers.push_back(&l);

  // Tensors: every value a live layer touches, and the Concat outputs their slices live in.
  std::vector<int> tensor_of(g.values.size(), -1);
  std::vector<bool> hwc4(g.values.size(), false);
  std::vector<int> used;
  auto use = [&](int v) {
    if (v >= 0 && std::find(used.begin(), used.end(), v) == used.end()) used.push_back(v);
  };
  for (const BuildLayer* l : layers) {
    if (l->op != BuildOp::kInputReformat)
      for (int v : l->inputs) use(v);
    if (l->op != BuildOp::kOutputReformat) use(l->output);
    use(l->residual);
    use(l->also_output);
    if (l->op == BuildOp::kInputReformat && options.input_format == IoFormat::kInt8Hwc4)
      hwc4[l->output] = true;
  }
  for (size_t k = 0; k < used.size(); ++k) use(g.values[used[k]].parent);
  std::vector<int> roots;
  for (int v : used)
    if (g.values[v].parent < 0) {
      const BuildValue& value = g.values[v];
      EngineTensor t;
      t.name = value.name;
      t.type = value.type;
      t.channels = value.channels;
      t.height = value.height;
      t.width = value.width;
      t.scale = value.type == ElementType::kInt8 ? value.scale : 1.0f;
      t.layout = {hwc4[v] ? 4 : round_up(value.channels, 16), 0};
      t.buffer = int(e.buffers.size());
      ArenaBuffer b;
      b.bytes_per_image = uint64_t(round_up(int(t.image_bytes()), 64));
      b.first_layer = int(layers.size());
      b.last_layer = -1;
      e.buffers.push_back(b);
      tensor_of[v] = int(e.tensors.size());
      e.tensors.push_back(t);
    }
  for (int v : used)
    if (g.values[v].parent >= 0) {
      const BuildValue& value = g.values[v];
      const EngineTensor& root = e.tensors[tensor_of[value.parent]];
      if (g.values[value.parent].parent >= 0)
        return internal_error("value '", value.name, "' is a slice of a slice");
      EngineTensor t = root;
      t.name = value.name;
      t.channels = value.channels;
      t.scale = value.type == ElementType::kInt8 ? value.scale : 1.0f;
      t.layout.offset = value.channel_offset;
      tensor_of[v] = int(e.tensors.size());
      e.tensors.push_back(t);
    }

  for (size_t k = 0; k < g.inputs.size(); ++k) {
    const BuildValue& v = g.values[g.inputs[k]];
    EngineIo io;
    io.name = v.name;
    io.format = options.input_format;
    io.channels = v.channels;
    io.height = v.height;
    io.width = v.width;
    io.scale = v.scale > 0 ? v.scale : 1.0f;
    e.inputs.push_back(io);
  }
  for (size_t k = 0; k < g.outputs.size(); ++k) {
    const BuildValue& v = g.values[g.outputs[k]];
    EngineIo io;
    io.name = v.name;
    io.format = options.output_format;
    io.channels = v.channels;
    io.height = v.height;
    io.width = v.width;
    io.scale = v.scale > 0 ? v.scale : 1.0f;
    io.tensor = tensor_of[g.outputs[k]];
    e.outputs.push_back(io);
  }

  for (const BuildLayer* b : layers) {
    EngineLayer l;
    l.name.clear();
    for (const auto& n : b->nodes) l.name += (l.name.empty() ? "" : " + ") + n;
    l.op = layer_op(g, *b);
    l.kind = layer_kind(b->op);
    l.precision = b->precision;
    if (b->op == BuildOp::kInputReformat) {
      l.inputs = b->inputs;
      e.inputs[b->inputs[0]].tensor = tensor_of[b->output];
    } else {
      for (int v : b->inputs) l.inputs.push_back(tensor_of[v]);
    }
    l.output = b->op == BuildOp::kOutputReformat ? b->output : tensor_of[b->output];
    l.residual = b->residual >= 0 ? tensor_of[b->residual] : -1;
    l.requant_from = b->requant_from;
    l.also_output = b->also_output >= 0 ? tensor_of[b->also_output] : -1;
    l.kernel = b->kernel;
    l.stride = b->stride;
    l.pad = b->pad;
    l.factor = b->factor;
    if (b->op == BuildOp::kConv) QYOLO_RETURN_IF_ERROR(lower_conv(g, *b, e, l, e));
    if (b->op == BuildOp::kSigmoid && b->precision == ElementType::kInt8) {
      const auto table = sigmoid_table(e.tensors[l.inputs[0]].scale, e.tensors[l.output].scale);
      l.table = e.add_weights(table.data(), table.size());
    }
    e.layers.push_back(std::move(l));
    if (b->precision != ElementType::kInt8 && !b->reason.empty())
      for (const auto& n : b->nodes) e.fallbacks.push_back({n, b->reason});
  }

  // Lifetimes: from the first layer that writes a buffer to the last that reads it.
  for (size_t j = 0; j < e.layers.size(); ++j) {
    const EngineLayer& l = e.layers[j];
    std::vector<int> touched;
    if (l.kind != LayerKind::kInputReformat) touched = l.inputs;
    if (l.kind != LayerKind::kOutputReformat) touched.push_back(l.output);
    if (l.residual >= 0) touched.push_back(l.residual);
    if (l.also_output >= 0) touched.push_back(l.also_output);
    for (int t : touched) {
      ArenaBuffer& b = e.buffers[e.tensors[t].buffer];
      b.first_layer = std::min(b.first_layer, int(j));
      b.last_layer = std::max(b.last_layer, int(j));
    }
  }
  unplanned_bytes = 0;
  for (const ArenaBuffer& b : e.buffers) unplanned_bytes += b.bytes_per_image;
  if (options.reuse_memory) {
    e.arena_bytes_per_image = plan_arena(e.buffers);
  } else {
    for (ArenaBuffer& b : e.buffers) {
      b.offset = e.arena_bytes_per_image;
      e.arena_bytes_per_image += b.bytes_per_image;
    }
  }
  // Planned per image; each buffer holds max_batch images back to back.
  for (ArenaBuffer& b : e.buffers) b.offset *= uint64_t(e.max_batch);
  QYOLO_RETURN_IF_ERROR(validate_engine(e));
  return e;
}

}  // namespace

Expected<BuildResult> build_engine(const Graph& graph, const BuildOptions& options) {
  if (options.max_batch < 1)
    return invalid_argument("--maxBatch ", options.max_batch, " is not positive");
  BuildResult result;
  auto& passes = result.passes;
  QYOLO_ASSIGN_OR_RETURN(BuildGraph g, import_graph(graph, options, passes));
  auto run = [&](auto&& pass) -> Status {
    PassReport report;
    QYOLO_RETURN_IF_ERROR(pass(report));
    passes.push_back(report);
    return Status::ok();
  };
  QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return assign_precision(g, options, r); }));
  if (options.fusion) {
    QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return fuse_conv_activation(g, r); }));
    QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return fuse_residual_add(g, r); }));
  } else {
    passes.push_back({"fuse_conv_activation", "off (QYOLO_DISABLE_FUSION=1)"});
    passes.push_back({"fuse_residual_add", "off (QYOLO_DISABLE_FUSION=1)"});
  }
  QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return insert_io_reformats(g, options, r); }));
  QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return insert_precision_converts(g, r); }));
  QYOLO_RETURN_IF_ERROR(run([&](PassReport& r) { return remove_concat(g, options, r); }));
  QYOLO_ASSIGN_OR_RETURN(result.engine, lower(g, options, result.unplanned_bytes_per_image));
  const Engine& e = result.engine;
  passes.push_back(
      {"plan_memory",
       str_cat(e.buffers.size(), " buffers for ", e.tensors.size(), " tensors, peak ",
               e.arena_bytes_per_image, " bytes per image (", result.unplanned_bytes_per_image,
               " without reuse), ", e.arena_bytes(), " at batch ", e.max_batch)});
  return result;
}

}  // namespace qyolo
