// The INT8 CPU reference backend (see qyolo/int8.h). A layer runs INT8 when every activation
// it reads and writes has a scale and no --layerPrecisions entry keeps it in FP16; every other
// layer runs FP16 (inputs, weights and outputs rounded to half, float32 arithmetic). Values
// cross between the two through explicit quantize / dequantize steps, as TensorRT inserts
// reformat layers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "ops/conv_params.h"
#include "qyolo/conv_int8.h"
#include "qyolo/int8.h"
#include "qyolo/ops.h"
#include "runtime/backends/cpu/check_inputs.h"

namespace qyolo {
namespace {

enum class Kind {
  kConv,       // int8 convolution (+ SiLU), conv_int8.h arithmetic
  kSelect,     // MaxPool / nearest Resize on int8, then requantized if the scale changes
  kConcat,     // int8 inputs requantized to the output scale
  kAdd,        // dequantize, add, requantize
  kMul,        // dequantize, multiply, requantize
  kSigmoid,    // 256-entry table
  kFloat,      // any op through its reference kernel, FP16 when `fp16`
  kQuantize,   // float -> int8
  kDequantize  // int8 -> float
};

struct Step {
  Kind kind = Kind::kFloat;
  const Node* node = nullptr;
  std::vector<int> inputs, outputs;
  bool fp16 = false;
  std::vector<float> input_scales;
  float output_scale = 1.0f;
  // Convolution.
  ConvInt8Shape shape;
  std::vector<int8_t> weights;  // OHWI
  std::vector<float> weight_scales, bias;
  bool silu = false;
  std::array<int8_t, 256> table{};
};

int8_t quantize(float value, float scale) { return quantize_rne(value, scale); }

}  // namespace

float round_to_half(float value) { return half_to_float(float_to_half(value)); }

struct Int8Executor::Impl {
  Graph graph;
  ShapeInfo shapes;
  Int8Options options;
  std::vector<Tensor> slots;
  std::unordered_map<std::string, int> float_slot, int8_slot;
  std::vector<Step> steps;
  std::vector<ValueInfo> inputs, outputs;
  std::vector<int> output_slots;
  std::vector<LayerPrecision> layers;

  int new_slot(Tensor t) {
    slots.push_back(std::move(t));
    return static_cast<int>(slots.size()) - 1;
  }
  const float* scale_of(const std::string& name) const {
    auto it = options.scales.find(name);
    return it == options.scales.end() ? nullptr : &it->second;
  }
  bool is_constant(const std::string& name) const { return shapes.constant(name) != nullptr; }

  // The int8 version of `name`, quantizing its float version on first use.
  int need_int8(const std::string& name) {
    if (auto it = int8_slot.find(name); it != int8_slot.end()) return it->second;
    Step step;
    step.kind = Kind::kQuantize;
    step.inputs = {need_float(name)};
    step.output_scale = *scale_of(name);
    const int s = new_slot(Tensor(DType::kInt8, shapes.find(name)->shape));
    step.outputs = {s};
    steps.push_back(std::move(step));
    int8_slot[name] = s;
    return s;
  }
  // The float version of `name`, dequantizing its int8 version on first use.
  int need_float(const std::string& name) {
    if (auto it = float_slot.find(name); it != float_slot.end()) return it->second;
    Step step;
    step.kind = Kind::kDequantize;
    step.inputs = {int8_slot.at(name)};
    step.input_scales = {*scale_of(name)};
    const int s = new_slot(Tensor(DType::kFloat32, shapes.find(name)->shape));
    step.outputs = {s};
    steps.push_back(std::move(step));
    float_slot[name] = s;
    return s;
  }
  int produce(const std::string& name, DType dtype) {
    const int s = new_slot(Tensor(dtype, shapes.find(name)->shape));
    (dtype == DType::kInt8 ? int8_slot : float_slot)[name] = s;
    return s;
  }
};

namespace {

// The Sigmoid and Mul of a SiLU that consume a Conv output and nothing else does.
struct SiluMatch {
  size_t sigmoid = 0, mul = 0;
  bool found = false;
};

SiluMatch match_silu(const Graph& g, size_t conv,
                     const std::unordered_map<std::string, std::vector<size_t>>& users) {
  const std::string& y = g.nodes[conv].outputs[0];
  auto it = users.find(y);
  if (g.is_output(y) || it == users.end() || it->second.size() != 2) return {};
  size_t sig = SIZE_MAX, mul = SIZE_MAX;
  for (size_t u : it->second) {
    if (g.nodes[u].op_type == "Sigmoid") sig = u;
    if (g.nodes[u].op_type == "Mul") mul = u;
  }
  if (sig == SIZE_MAX || mul == SIZE_MAX) return {};
  const std::string& s = g.nodes[sig].outputs[0];
  auto s_users = users.find(s);
  if (g.is_output(s) || s_users == users.end() || s_users->second != std::vector<size_t>{mul}) {
    return {};
  }
  const auto& in = g.nodes[mul].inputs;
  if (!((in[0] == y && in[1] == s) || (in[0] == s && in[1] == y))) return {};
  return {sig, mul, true};
}

// Quantizes float OIHW weights per output channel into OHWI int8 with max|w[c]| / 127 scales.
void quantize_weights(const Tensor& w, Step& step) {
  const Shape& s = w.shape();
  const int64_t out = s[0], in = s[1], kh = s[2], kw = s[3];
  const float* src = w.data<float>();
  step.weights.assign(static_cast<size_t>(w.numel()), 0);
  step.weight_scales.assign(out, 1.0f);
  for (int64_t o = 0; o < out; ++o) {
    float amax = 0;
    for (int64_t i = 0; i < in * kh * kw; ++i)
      amax = std::max(amax, std::abs(src[o * in * kh * kw + i]));
    const float scale = amax > 0 ? amax / 127.0f : 1.0f;
    step.weight_scales[o] = scale;
    for (int64_t c = 0; c < in; ++c) {
      for (int64_t y = 0; y < kh; ++y) {
        for (int64_t x = 0; x < kw; ++x) {
          const float v = src[((o * in + c) * kh + y) * kw + x];
          step.weights[((o * kh + y) * kw + x) * in + c] = quantize(v, scale);
        }
      }
    }
  }
}

}  // namespace

Int8Executor::Int8Executor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8Executor::~Int8Executor() = default;

Expected<std::unique_ptr<Int8Executor>> Int8Executor::create(const Graph& graph,
                                                             Int8Options options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.graph = graph;
  m.options = std::move(options);
  for (const auto& [name, scale] : m.options.scales) {
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      return invalid_argument("scale of '", name, "' is ", scale, ", expected a positive number");
    }
  }
  QYOLO_RETURN_IF_ERROR(topological_sort(m.graph));
  QYOLO_ASSIGN_OR_RETURN(m.shapes, infer_shapes(m.graph, m.options.input_shapes));
  const Graph& g = m.graph;
  for (const auto& input : g.inputs) {
    const ValueInfo* info = m.shapes.find(input.name);
    m.inputs.push_back(*info);
    m.float_slot[input.name] = m.new_slot(Tensor(info->dtype, info->shape));
  }
  for (const auto& [name, tensor] : m.shapes.constants) m.float_slot[name] = m.new_slot(tensor);

  const auto users = consumers_by_value(g);
  // The post-processing tail: nodes fed by a convolution from which no convolution can be
  // reached (a full export's detect decode). They run FP32, as the decode of a trimmed model
  // does on the host; squeezing box coordinates and confidences into one int8 scale (their
  // Concat) would destroy the confidences.
  std::vector<bool> after_conv(g.nodes.size(), false);
  {
    std::set<std::string> fed;  // values downstream of a convolution
    for (size_t k = 0; k < g.nodes.size(); ++k) {
      bool from_conv = g.nodes[k].op_type == "Conv";
      for (const auto& in : g.nodes[k].inputs) from_conv = from_conv || fed.count(in);
      if (!from_conv) continue;
      after_conv[k] = g.nodes[k].op_type != "Conv";
      for (const auto& out : g.nodes[k].outputs) fed.insert(out);
    }
  }
  std::vector<bool> reaches_conv(g.nodes.size(), false);
  for (size_t k = g.nodes.size(); k-- > 0;) {
    bool reaches = g.nodes[k].op_type == "Conv";
    for (const auto& out : g.nodes[k].outputs) {
      auto it = users.find(out);
      if (it == users.end()) continue;
      for (size_t u : it->second) reaches = reaches || reaches_conv[u];
    }
    reaches_conv[k] = reaches;
  }
  std::vector<bool> absorbed(g.nodes.size(), false);
  auto named_fp16 = [&](const Node& n) { return m.options.fp16_layers.count(n.name) != 0; };
  auto all_scaled = [&](const std::vector<std::string>& values) {
    return std::all_of(values.begin(), values.end(), [&](const std::string& v) {
      return !v.empty() && m.scale_of(v) && !m.is_constant(v);
    });
  };

  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (absorbed[i]) continue;
    const Node& node = g.nodes[i];
    bool folded = true;
    for (const auto& out : node.outputs) folded = folded && (out.empty() || m.is_constant(out));
    if (folded) continue;

    LayerPrecision layer{node.name, node.op_type, "int8", ""};
    const std::string& op = node.op_type;
    Step step;
    step.node = &node;
    bool int8 = false;

    if (op == "Conv") {
      const SiluMatch silu = match_silu(g, i, users);
      const std::string out = silu.found ? g.nodes[silu.mul].outputs[0] : node.outputs[0];
      const Tensor* w = m.shapes.constant(node.inputs[1]);
      const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
      const Tensor* b = has_bias ? m.shapes.constant(node.inputs[2]) : nullptr;
      const Shape& xs = m.shapes.find(node.inputs[0])->shape;
      std::string why;
      if (named_fp16(node) ||
          (silu.found && (named_fp16(g.nodes[silu.sigmoid]) || named_fp16(g.nodes[silu.mul])))) {
        why = "--layerPrecisions";
      } else if (!w || w->dtype() != DType::kFloat32 || (has_bias && !b)) {
        why = "weights are not constant float32";
      } else if (!all_scaled({node.inputs[0], out})) {
        why = str_cat("no scale for '", m.scale_of(node.inputs[0]) ? out : node.inputs[0], "'");
      } else {
        why = ops::conv_int8_unsupported(node, xs, w->shape());
      }
      if (why.empty()) {
        int8 = true;
        step.kind = Kind::kConv;
        const Shape& ws = w->shape();
        auto win = *ops::resolve_window(node, xs[2], xs[3], ws[2], ws[3]);
        step.shape = {static_cast<int>(xs[0]),        static_cast<int>(xs[1]),
                      static_cast<int>(xs[2]),        static_cast<int>(xs[3]),
                      static_cast<int>(ws[0]),        static_cast<int>(ws[2]),
                      static_cast<int>(win.stride_h), static_cast<int>(win.pad_top)};
        quantize_weights(*w, step);
        step.bias.assign(ws[0], 0.0f);
        if (b) std::copy(b->data<float>(), b->data<float>() + ws[0], step.bias.begin());
        step.silu = silu.found;
        step.input_scales = {*m.scale_of(node.inputs[0])};
        step.output_scale = *m.scale_of(out);
        step.inputs = {m.need_int8(node.inputs[0])};
        step.outputs = {m.produce(out, DType::kInt8)};
        if (silu.found) {
          absorbed[silu.sigmoid] = absorbed[silu.mul] = true;
          layer.op = "Conv+SiLU";
        }
      } else {
        layer.reason = why;
      }
    } else if (after_conv[i] && !reaches_conv[i]) {
      layer.reason = "after the last convolution";
    } else if (!named_fp16(node)) {
      std::vector<std::string> activations;
      for (const auto& in : node.inputs) {
        if (!in.empty() && !m.is_constant(in)) activations.push_back(in);
      }
      const bool scaled = !activations.empty() && all_scaled(activations) &&
                          all_scaled({node.outputs[0]}) && node.outputs.size() == 1;
      const bool same_shapes =
          activations.size() == node.inputs.size() &&
          std::all_of(activations.begin(), activations.end(), [&](const std::string& v) {
            return m.shapes.find(v)->shape == m.shapes.find(node.outputs[0])->shape;
          });
      if (scaled && (op == "MaxPool" || op == "Resize")) {
        int8 = true;
        step.kind = Kind::kSelect;
      } else if (scaled && op == "Concat" && activations.size() == node.inputs.size()) {
        int8 = true;
        step.kind = Kind::kConcat;
      } else if (scaled && (op == "Add" || op == "Mul") && same_shapes) {
        int8 = true;
        step.kind = op == "Add" ? Kind::kAdd : Kind::kMul;
      } else if (scaled && op == "Sigmoid") {
        int8 = true;
        step.kind = Kind::kSigmoid;
      } else {
        layer.reason = scaled ? "no INT8 kernel for this op" : "no scale for an input or output";
      }
      if (int8) {
        for (const auto& in : node.inputs) {
          if (in.empty()) {
            step.inputs.push_back(-1);
          } else if (m.is_constant(in)) {
            step.inputs.push_back(m.float_slot.at(in));  // Resize scales and the like
          } else {
            step.inputs.push_back(m.need_int8(in));
            step.input_scales.push_back(*m.scale_of(in));
          }
        }
        step.output_scale = *m.scale_of(node.outputs[0]);
        step.outputs = {m.produce(node.outputs[0], DType::kInt8)};
        if (step.kind == Kind::kSigmoid) {
          for (int q = -128; q < 128; ++q) {
            const float x = static_cast<float>(q) * step.input_scales[0];
            step.table[q + 128] = quantize(1.0f / (1.0f + std::exp(-x)), step.output_scale);
          }
        }
      }
    } else {
      layer.reason = "--layerPrecisions";
    }

    if (!int8) {
      step.kind = Kind::kFloat;
      step.fp16 = !(after_conv[i] && !reaches_conv[i]);
      layer.precision = step.fp16 ? "fp16" : "fp32";
      for (const auto& in : node.inputs) step.inputs.push_back(in.empty() ? -1 : m.need_float(in));
      for (const auto& out : node.outputs) {
        step.outputs.push_back(out.empty() ? -1 : m.produce(out, m.shapes.find(out)->dtype));
      }
    }
    m.steps.push_back(std::move(step));
    m.layers.push_back(layer);
  }
  for (const auto& output : g.outputs) {
    m.outputs.push_back(*m.shapes.find(output.name));
    m.output_slots.push_back(m.need_float(output.name));
  }
  return std::unique_ptr<Int8Executor>(new Int8Executor(std::move(impl)));
}

namespace {

// NCHW <-> NHWC for int8 tensors around the convolution reference, which is channels-last.
void nchw_to_nhwc(const int8_t* src, int8_t* dst, int64_t n, int64_t c, int64_t hw) {
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) dst[(b * hw + p) * c + ch] = src[(b * c + ch) * hw + p];
}
void nhwc_to_nchw(const int8_t* src, int8_t* dst, int64_t n, int64_t c, int64_t hw) {
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) dst[(b * c + ch) * hw + p] = src[(b * hw + p) * c + ch];
}

Status run_conv(const Step& step, const Tensor& x, Tensor& y) {
  const ConvInt8Shape& s = step.shape;
  std::vector<int8_t> in(static_cast<size_t>(x.numel())), out(static_cast<size_t>(y.numel()));
  nchw_to_nhwc(x.data<int8_t>(), in.data(), s.batch, s.in_channels, int64_t{s.in_h} * s.in_w);
  ConvInt8Epilogue e;
  e.input_scale = step.input_scales[0];
  e.weight_scales = step.weight_scales.data();
  e.bias = step.bias.data();
  e.silu = step.silu;
  e.output_scale = step.output_scale;
  QYOLO_RETURN_IF_ERROR(conv_int8_reference(s, in.data(), {s.in_channels, 0}, step.weights.data(),
                                            e, out.data(), {s.out_channels, 0}));
  nhwc_to_nchw(out.data(), y.data<int8_t>(), s.batch, s.out_channels,
               int64_t{s.out_h()} * s.out_w());
  return Status::ok();
}

void requantize_into(const int8_t* src, int64_t n, float from, float to, int8_t* dst) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n));
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = quantize(static_cast<float>(src[i]) * from, to);
}

}  // namespace

Expected<std::map<std::string, Tensor>> Int8Executor::run(
    const std::map<std::string, Tensor>& inputs) {
  Impl& m = *impl_;
  QYOLO_RETURN_IF_ERROR(cpu::check_inputs(m.inputs, inputs));
  for (const auto& expected : m.inputs) {
    m.slots[m.float_slot.at(expected.name)] = inputs.at(expected.name);
  }
  for (Step& step : m.steps) {
    auto in = [&](size_t k) -> Tensor& { return m.slots[step.inputs[k]]; };
    Tensor& out = m.slots[step.outputs[0]];
    switch (step.kind) {
      case Kind::kConv:
        QYOLO_RETURN_IF_ERROR(run_conv(step, in(0), out));
        break;
      case Kind::kQuantize: {
        const float* x = in(0).data<float>();
        int8_t* q = out.data<int8_t>();
        for (int64_t i = 0; i < out.numel(); ++i) q[i] = quantize(x[i], step.output_scale);
        break;
      }
      case Kind::kDequantize: {
        const int8_t* q = in(0).data<int8_t>();
        float* x = out.data<float>();
        for (int64_t i = 0; i < out.numel(); ++i)
          x[i] = static_cast<float>(q[i]) * step.input_scales[0];
        break;
      }
      case Kind::kSelect: {
        std::vector<const Tensor*> args;
        for (int s : step.inputs) args.push_back(s < 0 ? nullptr : &m.slots[s]);
        Tensor selected(DType::kInt8, out.shape());
        std::vector<Tensor*> results = {&selected};
        QYOLO_RETURN_IF_ERROR(find_op(step.node->op_type)->compute(*step.node, args, results));
        requantize_into(selected.data<int8_t>(), out.numel(), step.input_scales[0],
                        step.output_scale, out.data<int8_t>());
        break;
      }
      case Kind::kConcat: {
        std::vector<Tensor> requantized;
        std::vector<const Tensor*> args;
        requantized.reserve(step.inputs.size());
        for (size_t k = 0; k < step.inputs.size(); ++k) {
          requantized.emplace_back(DType::kInt8, in(k).shape());
          requantize_into(in(k).data<int8_t>(), in(k).numel(), step.input_scales[k],
                          step.output_scale, requantized.back().data<int8_t>());
          args.push_back(&requantized.back());
        }
        std::vector<Tensor*> results = {&out};
        QYOLO_RETURN_IF_ERROR(find_op("Concat")->compute(*step.node, args, results));
        break;
      }
      case Kind::kAdd:
      case Kind::kMul: {
        const int8_t* a = in(0).data<int8_t>();
        const int8_t* b = in(1).data<int8_t>();
        int8_t* q = out.data<int8_t>();
        const float sa = step.input_scales[0], sb = step.input_scales[1];
        for (int64_t i = 0; i < out.numel(); ++i) {
          const float x = static_cast<float>(a[i]) * sa, y = static_cast<float>(b[i]) * sb;
          q[i] = quantize(step.kind == Kind::kAdd ? x + y : x * y, step.output_scale);
        }
        break;
      }
      case Kind::kSigmoid: {
        const int8_t* x = in(0).data<int8_t>();
        int8_t* q = out.data<int8_t>();
        for (int64_t i = 0; i < out.numel(); ++i) q[i] = step.table[x[i] + 128];
        break;
      }
      case Kind::kFloat: {
        // FP16: every float input (weights too) rounded to half, float32 arithmetic, the
        // outputs rounded to half.
        std::vector<Tensor> rounded;
        std::vector<const Tensor*> args;
        rounded.reserve(step.inputs.size());
        for (int s : step.inputs) {
          if (s < 0) {
            args.push_back(nullptr);
            continue;
          }
          const Tensor& t = m.slots[s];
          if (step.fp16 && t.dtype() == DType::kFloat32) {
            rounded.emplace_back(t);
            float* p = rounded.back().data<float>();
            for (int64_t i = 0; i < t.numel(); ++i) p[i] = round_to_half(p[i]);
            args.push_back(&rounded.back());
          } else {
            args.push_back(&t);
          }
        }
        std::vector<Tensor*> results;
        for (int s : step.outputs) results.push_back(s < 0 ? nullptr : &m.slots[s]);
        Status status = find_op(step.node->op_type)->compute(*step.node, args, results);
        if (!status.is_ok()) return with_context(status, step.node->label());
        for (Tensor* r : results) {
          if (!r || !step.fp16 || r->dtype() != DType::kFloat32) continue;
          float* p = r->data<float>();
          for (int64_t i = 0; i < r->numel(); ++i) p[i] = round_to_half(p[i]);
        }
        break;
      }
    }
  }
  std::map<std::string, Tensor> results;
  for (size_t i = 0; i < m.outputs.size(); ++i) {
    results[m.outputs[i].name] = m.slots[m.output_slots[i]];
  }
  return results;
}

const std::vector<ValueInfo>& Int8Executor::inputs() const { return impl_->inputs; }
const std::vector<ValueInfo>& Int8Executor::outputs() const { return impl_->outputs; }
const std::vector<LayerPrecision>& Int8Executor::layers() const { return impl_->layers; }

Expected<std::set<std::string>> parse_layer_precisions(const std::string& text) {
  std::set<std::string> fp16;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start;
    bool quoted = false;
    while (end < text.size() && (quoted || text[end] != ',')) {
      if (text[end] == '"') quoted = !quoted;
      ++end;
    }
    std::string item = text.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos) {
      return invalid_argument("--layerPrecisions entry '", item, "': expected name:fp16");
    }
    std::string name = item.substr(0, colon), precision = item.substr(colon + 1);
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      name = name.substr(1, name.size() - 2);
    }
    if (precision == "fp16") {
      fp16.insert(name);
    } else if (precision != "int8") {
      return invalid_argument("--layerPrecisions entry '", item, "': precision '", precision,
                              "' is not supported (fp16 or int8)");
    }
  }
  return fp16;
}

}  // namespace qyolo
