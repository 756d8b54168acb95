// Reference kernels for ops that move or describe data without arithmetic: Concat, Reshape,
// Transpose, Split, Slice, Gather, Squeeze, Unsqueeze, Shape and Constant. They copy bytes,
// so every dtype works.
#include <algorithm>
#include <cstring>

#include "ops/ops_internal.h"

namespace qyolo::ops {

Status infer_Constant(InferContext& ctx) {
  auto it = ctx.node.attributes.find("value");
  if (it == ctx.node.attributes.end()) {
    for (const char* key : {"value_float", "value_floats", "value_int", "value_ints"}) {
      if (ctx.node.has_attribute(key)) {
        const Attribute& a = ctx.node.attributes.at(key);
        const bool is_list = std::string(key).back() == 's';
        const bool is_float = std::string(key).find("float") != std::string::npos;
        const int64_t n =
            is_list ? static_cast<int64_t>(is_float ? a.floats.size() : a.ints.size()) : 1;
        set_output(ctx, 0, is_float ? DType::kFloat32 : DType::kInt64,
                   is_list ? Shape{n} : Shape{});
        return Status::ok();
      }
    }
    return unsupported(ctx.node.label(), ": only tensor, float(s) and int(s) values are supported");
  }
  set_output(ctx, 0, it->second.t.dtype(), it->second.t.shape());
  return Status::ok();
}

Status compute_Constant(const Node& node, std::span<const Tensor* const>,
                        std::span<Tensor* const> out) {
  auto it = node.attributes.find("value");
  if (it != node.attributes.end()) {
    *out[0] = it->second.t;
    return Status::ok();
  }
  if (node.has_attribute("value_float")) {
    out[0]->data<float>()[0] = node.get_float("value_float", 0);
  } else if (node.has_attribute("value_int")) {
    out[0]->data<int64_t>()[0] = node.get_int("value_int", 0);
  } else if (node.has_attribute("value_floats")) {
    const auto& v = node.attributes.at("value_floats").floats;
    std::copy(v.begin(), v.end(), out[0]->data<float>());
  } else {
    const auto& v = node.attributes.at("value_ints").ints;
    std::copy(v.begin(), v.end(), out[0]->data<int64_t>());
  }
  return Status::ok();
}

Status infer_Shape(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  int64_t start = ctx.node.get_int("start", 0), end = ctx.node.get_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  set_output(ctx, 0, DType::kInt64, {end - start});
  return Status::ok();
}

Status compute_Shape(const Node& node, std::span<const Tensor* const> in,
                     std::span<Tensor* const> out) {
  const Shape& s = in[0]->shape();
  const int64_t rank = static_cast<int64_t>(s.size());
  int64_t start = node.get_int("start", 0);
  if (start < 0) start += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  for (int64_t i = 0; i < out[0]->numel(); ++i) out[0]->data<int64_t>()[i] = s[start + i];
  return Status::ok();
}

Status infer_Reshape(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(auto target, constant_ints(ctx, 1, "the target shape"));
  const bool allow_zero = ctx.node.get_int("allowzero", 0) != 0;
  Shape shape(target.begin(), target.end());
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allow_zero) {
      if (i >= x->shape.size()) {
        return invalid_argument(ctx.node.label(), ": 0 at position ", i, " copies a dimension '",
                                x->name, "' does not have");
      }
      shape[i] = x->shape[i];
    }
    if (shape[i] == -1) {
      if (infer_at >= 0) return invalid_argument(ctx.node.label(), ": more than one -1 in shape");
      infer_at = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      return invalid_argument(ctx.node.label(), ": invalid dimension ", shape[i]);
    } else {
      known *= shape[i];
    }
  }
  const int64_t total = shape_numel(x->shape);
  if (infer_at >= 0) {
    if (known == 0 || total % known != 0) {
      return invalid_argument(ctx.node.label(), ": cannot reshape '", x->name, "' ",
                              shape_str(x->shape), " to ",
                              shape_str(Shape(target.begin(), target.end())));
    }
    shape[infer_at] = total / known;
  } else if (known != total) {
    return invalid_argument(ctx.node.label(), ": cannot reshape '", x->name, "' ",
                            shape_str(x->shape), " (", total, " elements) to ", shape_str(shape));
  }
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}

namespace {
Status copy_bytes(std::span<const Tensor* const> in, std::span<Tensor* const> out) {
  if (in[0]->nbytes()) std::memcpy(out[0]->raw(), in[0]->raw(), in[0]->nbytes());
  return Status::ok();
}
}  // namespace

Status compute_Reshape(const Node&, std::span<const Tensor* const> in,
                       std::span<Tensor* const> out) {
  return copy_bytes(in, out);
}

namespace {
// The axes of Squeeze/Unsqueeze: an attribute before opset 13, an input after.
Expected<std::vector<int64_t>> axes_of(InferContext& ctx) {
  if (ctx.inputs.size() > 1 && ctx.inputs[1]) return constant_ints(ctx, 1, "axes");
  return ctx.node.get_ints("axes");
}
}  // namespace

Status infer_Unsqueeze(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(auto axes, axes_of(ctx));
  const int64_t rank = static_cast<int64_t>(x->shape.size() + axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, a, rank));
    if (inserted[axis]) return invalid_argument(ctx.node.label(), ": axis ", a, " repeated");
    inserted[axis] = true;
  }
  Shape shape;
  size_t next = 0;
  for (int64_t i = 0; i < rank; ++i) shape.push_back(inserted[i] ? 1 : x->shape[next++]);
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}
Status compute_Unsqueeze(const Node&, std::span<const Tensor* const> in,
                         std::span<Tensor* const> out) {
  return copy_bytes(in, out);
}

Status infer_Squeeze(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(auto axes, axes_of(ctx));
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  std::vector<bool> removed(rank, false);
  for (int64_t a : axes) {
    QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, a, rank));
    if (x->shape[axis] != 1) {
      return invalid_argument(ctx.node.label(), ": cannot squeeze axis ", a, " of size ",
                              x->shape[axis]);
    }
    removed[axis] = true;
  }
  Shape shape;
  for (int64_t i = 0; i < rank; ++i) {
    const bool drop = axes.empty() ? x->shape[i] == 1 : removed[i];
    if (!drop) shape.push_back(x->shape[i]);
  }
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}
Status compute_Squeeze(const Node&, std::span<const Tensor* const> in,
                       std::span<Tensor* const> out) {
  return copy_bytes(in, out);
}

Status infer_Concat(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* first, require_input(ctx, 0));
  const int64_t rank = static_cast<int64_t>(first->shape.size());
  QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, ctx.node.get_int("axis", 0), rank));
  Shape shape = first->shape;
  shape[axis] = 0;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, i));
    if (x->dtype != first->dtype || static_cast<int64_t>(x->shape.size()) != rank) {
      return invalid_argument(ctx.node.label(), ": input '", x->name, "' (", dtype_name(x->dtype),
                              " ", shape_str(x->shape), ") does not match input '", first->name,
                              "' (", dtype_name(first->dtype), " ", shape_str(first->shape), ")");
    }
    for (int64_t d = 0; d < rank; ++d) {
      if (d != axis && x->shape[d] != first->shape[d]) {
        return invalid_argument(ctx.node.label(), ": input '", x->name, "' has shape ",
                                shape_str(x->shape), ", expected ", shape_str(first->shape),
                                " except on axis ", axis);
      }
    }
    shape[axis] += x->shape[axis];
  }
  set_output(ctx, 0, first->dtype, shape);
  return Status::ok();
}

Status compute_Concat(const Node& node, std::span<const Tensor* const> in,
                      std::span<Tensor* const> out) {
  const Shape& ys = out[0]->shape();
  const int64_t rank = static_cast<int64_t>(ys.size());
  const int64_t axis =
      node.get_int("axis", 0) < 0 ? node.get_int("axis", 0) + rank : node.get_int("axis", 0);
  const size_t elem = dtype_size(out[0]->dtype());
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= ys[d];
  const int64_t out_row = out[0]->numel() / std::max<int64_t>(outer, 1) * elem;
  int64_t offset = 0;
  for (const Tensor* x : in) {
    const int64_t row = x->numel() / std::max<int64_t>(outer, 1) * elem;
    const auto* src = static_cast<const std::byte*>(x->raw());
    auto* dst = static_cast<std::byte*>(out[0]->raw()) + offset;
#pragma omp parallel for if (outer > 1 && x->nbytes() > (1 << 20))
    for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row, src + o * row, row);
    offset += row;
  }
  return Status::ok();
}

namespace {
// Split sizes from the input (opset 13+), the attribute, or equal parts.
Expected<std::vector<int64_t>> split_sizes(const Node& node, const Tensor* split_input,
                                           const std::vector<int64_t>* known_input, int64_t dim,
                                           size_t parts) {
  std::vector<int64_t> sizes;
  if (known_input) {
    sizes = *known_input;
  } else if (split_input) {
    sizes = split_input->to_int64();
  } else if (node.has_attribute("split")) {
    sizes = node.get_ints("split");
  } else {
    if (parts == 0 || dim % static_cast<int64_t>(parts) != 0) {
      return invalid_argument(node.label(), ": cannot split ", dim, " into ", parts,
                              " equal parts");
    }
    sizes.assign(parts, dim / static_cast<int64_t>(parts));
  }
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  if (sizes.size() != parts || total != dim) {
    return invalid_argument(node.label(), ": split sizes do not add up to ", dim, " over ", parts,
                            " outputs");
  }
  return sizes;
}
}  // namespace

Status infer_Split(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, ctx.node.get_int("axis", 0), rank));
  std::vector<int64_t> from_input;
  const bool has_input = ctx.inputs.size() > 1 && ctx.inputs[1];
  if (has_input) {
    QYOLO_ASSIGN_OR_RETURN(from_input, constant_ints(ctx, 1, "split"));
  }
  QYOLO_ASSIGN_OR_RETURN(
      auto sizes, split_sizes(ctx.node, nullptr, has_input ? &from_input : nullptr, x->shape[axis],
                              ctx.node.outputs.size()));
  for (size_t i = 0; i < sizes.size(); ++i) {
    Shape shape = x->shape;
    shape[axis] = sizes[i];
    set_output(ctx, i, x->dtype, shape);
  }
  return Status::ok();
}

Status compute_Split(const Node& node, std::span<const Tensor* const> in,
                     std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  const int64_t rank = static_cast<int64_t>(xs.size());
  int64_t axis = node.get_int("axis", 0);
  if (axis < 0) axis += rank;
  const size_t elem = dtype_size(in[0]->dtype());
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= xs[d];
  const int64_t in_row = in[0]->numel() / std::max<int64_t>(outer, 1) * elem;
  int64_t offset = 0;
  for (Tensor* y : out) {
    const int64_t row = y->numel() / std::max<int64_t>(outer, 1) * elem;
    const auto* src = static_cast<const std::byte*>(in[0]->raw()) + offset;
    auto* dst = static_cast<std::byte*>(y->raw());
    for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * row, src + o * in_row, row);
    offset += row;
  }
  return Status::ok();
}

Status infer_Transpose(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  std::vector<int64_t> perm = ctx.node.get_ints("perm");
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) {
    return invalid_argument(ctx.node.label(), ": perm has ", perm.size(), " entries for rank ",
                            rank);
  }
  std::vector<bool> seen(rank, false);
  Shape shape;
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p]) {
      return invalid_argument(ctx.node.label(), ": perm is not a permutation of 0..", rank - 1);
    }
    seen[p] = true;
    shape.push_back(x->shape[p]);
  }
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}

namespace {
template <typename Element>
void transpose_rows(const Element* src, Element* dst, const Shape& out_shape,
                    const std::vector<int64_t>& src_stride) {
  const int64_t rank = static_cast<int64_t>(out_shape.size());
  const int64_t inner = rank ? out_shape[rank - 1] : 1;
  const int64_t inner_stride = rank ? src_stride[rank - 1] : 1;
  const int64_t rows = shape_numel(out_shape) / std::max<int64_t>(inner, 1);
#pragma omp parallel for if (rows * inner > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    // Decompose the row index once; the innermost axis is a strided gather.
    int64_t rem = row, offset = 0;
    for (int64_t d = rank - 2; d >= 0; --d) {
      const int64_t coord = rem % out_shape[d];
      rem /= out_shape[d];
      offset += coord * src_stride[d];
    }
    const Element* s = src + offset;
    Element* o = dst + row * inner;
    for (int64_t i = 0; i < inner; ++i) o[i] = s[i * inner_stride];
  }
}
}  // namespace

Status compute_Transpose(const Node& node, std::span<const Tensor* const> in,
                         std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  const int64_t rank = static_cast<int64_t>(xs.size());
  std::vector<int64_t> perm = node.get_ints("perm");
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  const auto in_strides = strides_of(xs);
  std::vector<int64_t> src_stride(rank);  // input stride of each output axis
  for (int64_t d = 0; d < rank; ++d) src_stride[d] = in_strides[perm[d]];
  const Shape& ys = out[0]->shape();
  switch (dtype_size(in[0]->dtype())) {
    case 1:
      transpose_rows(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), ys, src_stride);
      break;
    case 2:
      transpose_rows(in[0]->data<uint16_t>(), out[0]->data<uint16_t>(), ys, src_stride);
      break;
    case 4:
      transpose_rows(in[0]->data<uint32_t>(), out[0]->data<uint32_t>(), ys, src_stride);
      break;
    case 8:
      transpose_rows(in[0]->data<uint64_t>(), out[0]->data<uint64_t>(), ys, src_stride);
      break;
    default:
      return unsupported(node.label(), ": dtype ", dtype_name(in[0]->dtype()));
  }
  return Status::ok();
}

namespace {
struct SliceAxes {
  std::vector<int64_t> start, step, count;  // per input axis
};

Expected<SliceAxes> resolve_slice(const Node& node, const Shape& xs,
                                  const std::vector<int64_t>& starts,
                                  const std::vector<int64_t>& ends, std::vector<int64_t> axes,
                                  std::vector<int64_t> steps) {
  const int64_t rank = static_cast<int64_t>(xs.size());
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return invalid_argument(node.label(), ": starts, ends, axes and steps differ in length");
  }
  SliceAxes s;
  s.start.assign(rank, 0);
  s.step.assign(rank, 1);
  s.count = xs;
  for (size_t i = 0; i < starts.size(); ++i) {
    QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node, axes[i], rank));
    const int64_t dim = xs[axis], step = steps[i];
    if (step == 0) return invalid_argument(node.label(), ": step 0 on axis ", axis);
    int64_t start = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t end = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      s.count[axis] = std::max<int64_t>(0, (end - start + step - 1) / step);
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      s.count[axis] = std::max<int64_t>(0, (start - end + (-step) - 1) / (-step));
    }
    s.start[axis] = start;
    s.step[axis] = step;
  }
  return s;
}

Expected<SliceAxes> slice_from_inputs(const Node& node, const Shape& xs,
                                      std::span<const Tensor* const> values) {
  auto ints = [&](size_t i) {
    return i < values.size() && values[i] ? values[i]->to_int64() : std::vector<int64_t>{};
  };
  return resolve_slice(node, xs, ints(1), ints(2), ints(3), ints(4));
}
}  // namespace

Status infer_Slice(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  for (size_t i = 1; i < ctx.inputs.size(); ++i) {
    if (ctx.inputs[i] && !ctx.values[i]) {
      return unsupported(ctx.node.label(), ": starts/ends/axes/steps (input ", i,
                         ") must be constants known before running");
    }
  }
  QYOLO_ASSIGN_OR_RETURN(SliceAxes s, slice_from_inputs(ctx.node, x->shape, ctx.values));
  set_output(ctx, 0, x->dtype, s.count);
  return Status::ok();
}

Status compute_Slice(const Node& node, std::span<const Tensor* const> in,
                     std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  QYOLO_ASSIGN_OR_RETURN(SliceAxes s, slice_from_inputs(node, xs, in));
  const int64_t rank = static_cast<int64_t>(xs.size());
  const auto in_strides = strides_of(xs);
  const auto out_strides = strides_of(s.count);
  const size_t elem = dtype_size(in[0]->dtype());
  const auto* src = static_cast<const std::byte*>(in[0]->raw());
  auto* dst = static_cast<std::byte*>(out[0]->raw());
  const int64_t n = out[0]->numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, offset = 0;
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t coord = rem / out_strides[d];
      rem -= coord * out_strides[d];
      offset += (s.start[d] + coord * s.step[d]) * in_strides[d];
    }
    std::memcpy(dst + i * elem, src + offset * elem, elem);
  }
  return Status::ok();
}

Status infer_Gather(InferContext& ctx) {
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* x, require_input(ctx, 0));
  QYOLO_ASSIGN_OR_RETURN(const ValueInfo* indices, require_input(ctx, 1));
  const int64_t rank = static_cast<int64_t>(x->shape.size());
  QYOLO_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(ctx.node, ctx.node.get_int("axis", 0), rank));
  if (indices->dtype != DType::kInt64 && indices->dtype != DType::kInt32) {
    return invalid_argument(ctx.node.label(), ": indices '", indices->name,
                            "' must be int32 or int64");
  }
  Shape shape(x->shape.begin(), x->shape.begin() + axis);
  shape.insert(shape.end(), indices->shape.begin(), indices->shape.end());
  shape.insert(shape.end(), x->shape.begin() + axis + 1, x->shape.end());
  set_output(ctx, 0, x->dtype, shape);
  return Status::ok();
}

Status compute_Gather(const Node& node, std::span<const Tensor* const> in,
                      std::span<Tensor* const> out) {
  const Shape& xs = in[0]->shape();
  const int64_t rank = static_cast<int64_t>(xs.size());
  int64_t axis = node.get_int("axis", 0);
  if (axis < 0) axis += rank;
  const auto indices = in[1]->to_int64();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= xs[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= xs[d];
  const int64_t dim = xs[axis];
  const size_t elem = dtype_size(in[0]->dtype());
  const auto* src = static_cast<const std::byte*>(in[0]->raw());
  auto* dst = static_cast<std::byte*>(out[0]->raw());
  const int64_t count = static_cast<int64_t>(indices.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < count; ++k) {
      int64_t idx = indices[k] < 0 ? indices[k] + dim : indices[k];
      if (idx < 0 || idx >= dim) {
        return invalid_argument(node.label(), ": index ", indices[k], " is out of range for ", dim);
      }
      std::memcpy(dst + (o * count + k) * inner * elem, src + (o * dim + idx) * inner * elem,
                  inner * elem);
    }
  }
  return Status::ok();
}

}  // namespace qyolo::ops
