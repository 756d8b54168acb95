// Data movement, element-wise layers and the I/O reformats of the CPU engine backend, on NHWC
// tensors with channel slices. int8 arithmetic as the reference: dequantize (q * s), compute
// in float, requantize (round half to even, clamped); fp16 arithmetic in float, rounded to half.
#include <algorithm>
#include <cmath>
#include <limits>

#include "qyolo/conv_int8.h"
#include "runtime/backends/cpu/engine_kernels.h"

namespace qyolo::cpu_engine {
namespace {

// Reads element `at` of a tensor image as a float value (int8: q * scale).
inline float load(const EngineTensor& t, const void* base, int64_t at) {
  if (t.type == ElementType::kInt8) return float(static_cast<const int8_t*>(base)[at]) * t.scale;
  if (t.type == ElementType::kFloat16)
    return half_to_float_bits(static_cast<const uint16_t*>(base)[at]);
  return static_cast<const float*>(base)[at];
}

inline void store(const EngineTensor& t, void* base, int64_t at, float value) {
  if (t.type == ElementType::kInt8)
    static_cast<int8_t*>(base)[at] = quantize_rne(value, t.scale);
  else if (t.type == ElementType::kFloat16)
    static_cast<uint16_t*>(base)[at] = float_to_half_rne(value);
  else
    static_cast<float*>(base)[at] = value;
}

// int8 -> int8 with the reference's requantize_into: a copy when the scales agree.
inline int8_t requantize(int8_t q, float from, float to) {
  return from == to ? q : quantize_rne(float(q) * from, to);
}

// Copies `value` of `src` (same element type as `dst`) into `dst`, requantizing int8.
inline void move_element(const EngineTensor& src, const void* sb, int64_t si,
                         const EngineTensor& dst, void* db, int64_t di) {
  if (src.type == ElementType::kInt8 && dst.type == ElementType::kInt8) {
    static_cast<int8_t*>(db)[di] =
        requantize(static_cast<const int8_t*>(sb)[si], src.scale, dst.scale);
  } else if (src.type == ElementType::kFloat16 && dst.type == ElementType::kFloat16) {
    static_cast<uint16_t*>(db)[di] = static_cast<const uint16_t*>(sb)[si];
  } else {
    store(dst, db, di, load(src, sb, si));
  }
}

size_t byte_size(const EngineTensor& t) { return element_size(t.type); }

// Typed offset helper: base pointer of image n, as bytes, adjusted for the slice offset.
uint8_t* image_bytes(const Context& ctx, int t, int n) {
  const EngineTensor& tensor = ctx.engine->tensors[t];
  const ArenaBuffer& b = ctx.engine->buffers[tensor.buffer];
  return ctx.arena + b.offset + uint64_t(n) * b.bytes_per_image +
         uint64_t(tensor.layout.offset) * byte_size(tensor);
}

}  // namespace

Status run_pointwise(const Context& ctx, int index) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  EngineTensor out = e.tensors[l.output];
  out.scale = layer_round_scale(e, l);  // a fused Concat copy: apply_fused_copy follows
  const EngineTensor& in = e.tensors[l.inputs[0]];
  const int h = out.height, w = out.width, c_n = out.channels;
  for (int n = 0; n < ctx.batch; ++n) {
    uint8_t* y = image_bytes(ctx, l.output, n);
    const uint8_t* x = image_bytes(ctx, l.inputs[0], n);
    switch (l.kind) {
      case LayerKind::kMaxPool: {
        if (in.type != out.type)
          return internal_error("layer '", l.name, "': MaxPool types differ");
#pragma omp parallel for
        for (int oh = 0; oh < h; ++oh)
          for (int ow = 0; ow < w; ++ow)
            for (int c = 0; c < c_n; ++c) {
              int64_t best = -1;
              float best_value = -std::numeric_limits<float>::infinity();
              for (int kr = 0; kr < l.kernel; ++kr) {
                const int ih = oh * l.stride - l.pad + kr;
                if (ih < 0 || ih >= in.height) continue;
                for (int kc = 0; kc < l.kernel; ++kc) {
                  const int iw = ow * l.stride - l.pad + kc;
                  if (iw < 0 || iw >= in.width) continue;
                  const int64_t at = (int64_t(ih) * in.width + iw) * in.layout.stride + c;
                  // Scales are positive, so the int8 order is the value order.
                  const float v = in.type == ElementType::kInt8
                                      ? float(reinterpret_cast<const int8_t*>(x)[at])
                                      : load(in, x, at);
                  if (best < 0 || v > best_value) {
                    best = at;
                    best_value = v;
                  }
                }
              }
              move_element(in, x, best, out, y, (int64_t(oh) * w + ow) * out.layout.stride + c);
            }
        break;
      }
      case LayerKind::kResizeNearest: {
#pragma omp parallel for
        for (int oh = 0; oh < h; ++oh)
          for (int ow = 0; ow < w; ++ow) {
            const int64_t src =
                (int64_t(oh / l.factor) * in.width + ow / l.factor) * in.layout.stride;
            const int64_t dst = (int64_t(oh) * w + ow) * out.layout.stride;
            for (int c = 0; c < c_n; ++c) move_element(in, x, src + c, out, y, dst + c);
          }
        break;
      }
      case LayerKind::kConvert:
      case LayerKind::kSigmoid: {
        const int8_t* table = e.weight_data<int8_t>(l.table);
        if (l.kind == LayerKind::kSigmoid && in.type == ElementType::kInt8 && !table)
          return internal_error("layer '", l.name, "': int8 Sigmoid without its table");
#pragma omp parallel for
        for (int p = 0; p < h * w; ++p)
          for (int c = 0; c < c_n; ++c) {
            const int64_t si = int64_t(p) * in.layout.stride + c;
            const int64_t di = int64_t(p) * out.layout.stride + c;
            if (l.kind == LayerKind::kConvert) {
              move_element(in, x, si, out, y, di);
            } else if (table) {
              reinterpret_cast<int8_t*>(y)[di] =
                  table[reinterpret_cast<const int8_t*>(x)[si] + 128];
            } else {
              store(out, y, di, 1.0f / (1.0f + std::exp(-load(in, x, si))));
            }
          }
        break;
      }
      case LayerKind::kAdd:
      case LayerKind::kMul: {
        const EngineTensor& in2 = e.tensors[l.inputs[1]];
        const uint8_t* x2 = image_bytes(ctx, l.inputs[1], n);
        const bool add = l.kind == LayerKind::kAdd;
#pragma omp parallel for
        for (int p = 0; p < h * w; ++p)
          for (int c = 0; c < c_n; ++c) {
            const float a = load(in, x, int64_t(p) * in.layout.stride + c);
            const float b = load(in2, x2, int64_t(p) * in2.layout.stride + c);
            store(out, y, int64_t(p) * out.layout.stride + c, add ? a + b : a * b);
          }
        break;
      }
      default:
        return internal_error("layer '", l.name, "': not a pointwise layer");
    }
  }
  return Status::ok();
}

Status apply_fused_copy(const Context& ctx, int index) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  if (!l.has_fused_copy()) return Status::ok();
  const FusedCopy copy = fused_copy(e, l);
  const EngineTensor& out = e.tensors[copy.source];
  const EngineTensor& dst = e.tensors[copy.target];
  int8_t table[256];  // requantize() of every int8 value
  for (int q = -128; q < 128; ++q) table[q + 128] = requantize(int8_t(q), copy.from, copy.to);
  const int64_t hw = int64_t(out.height) * out.width;
  for (int n = 0; n < ctx.batch; ++n) {
    const int8_t* x = ctx.image<int8_t>(copy.source, n);
    int8_t* y = ctx.image<int8_t>(copy.target, n);
#pragma omp parallel for
    for (int64_t p = 0; p < hw; ++p)
      for (int c = 0; c < out.channels; ++c)
        y[p * dst.layout.stride + c] = table[x[p * out.layout.stride + c] + 128];
  }
  return Status::ok();
}

Status run_input_reformat(const Context& ctx, int index, const void* input) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  const EngineIo& io = e.inputs[l.inputs[0]];
  const EngineTensor& t = e.tensors[l.output];
  const int64_t hw = int64_t(io.height) * io.width;
  for (int n = 0; n < ctx.batch; ++n) {
    const uint8_t* src = static_cast<const uint8_t*>(input) + n * io.image_bytes();
    uint8_t* y = image_bytes(ctx, l.output, n);
#pragma omp parallel for
    for (int64_t p = 0; p < hw; ++p) {
      const int c_end = t.layout.offset == 0 ? t.layout.stride : io.channels;
      for (int c = 0; c < c_end; ++c) {
        const int64_t di = p * t.layout.stride + c;
        if (c >= io.channels) {  // padding channels: zero, so every run sees the same bytes
          std::memset(y + di * byte_size(t), 0, byte_size(t));
          continue;
        }
        switch (io.format) {
          case IoFormat::kFp32Chw:
            store(t, y, di, reinterpret_cast<const float*>(src)[c * hw + p]);
            break;
          case IoFormat::kFp16Chw16: {
            const uint16_t h =
                reinterpret_cast<const uint16_t*>(src)[((c / 16) * hw + p) * 16 + c % 16];
            if (t.type == ElementType::kFloat16)
              reinterpret_cast<uint16_t*>(y)[di] = h;
            else
              store(t, y, di, half_to_float_bits(h));
            break;
          }
          case IoFormat::kInt8Chw32:
          case IoFormat::kInt8Hwc4: {
            const int64_t si =
                io.format == IoFormat::kInt8Hwc4 ? p * 4 + c : ((c / 32) * hw + p) * 32 + c % 32;
            const int8_t q = reinterpret_cast<const int8_t*>(src)[si];
            if (t.type == ElementType::kInt8)
              reinterpret_cast<int8_t*>(y)[di] = requantize(q, io.scale, t.scale);
            else
              store(t, y, di, float(q) * io.scale);
            break;
          }
        }
      }
    }
  }
  return Status::ok();
}

Status run_output_reformat(const Context& ctx, int index, void* output) {
  const Engine& e = *ctx.engine;
  const EngineLayer& l = e.layers[index];
  const EngineIo& io = e.outputs[l.output];
  const EngineTensor& t = e.tensors[l.inputs[0]];
  const int64_t hw = int64_t(io.height) * io.width;
  EngineTensor target;  // the caller's element type, for store()
  target.scale = io.scale;
  target.type = io.format == IoFormat::kFp32Chw     ? ElementType::kFloat32
                : io.format == IoFormat::kFp16Chw16 ? ElementType::kFloat16
                                                    : ElementType::kInt8;
  const int padded = io.format == IoFormat::kFp16Chw16   ? round_up(io.channels, 16)
                     : io.format == IoFormat::kInt8Chw32 ? round_up(io.channels, 32)
                     : io.format == IoFormat::kInt8Hwc4  ? 4
                                                         : io.channels;
  for (int n = 0; n < ctx.batch; ++n) {
    uint8_t* dst = static_cast<uint8_t*>(output) + n * io.image_bytes();
    const uint8_t* x = image_bytes(ctx, l.inputs[0], n);
#pragma omp parallel for
    for (int64_t p = 0; p < hw; ++p)
      for (int c = 0; c < padded; ++c) {
        int64_t di = 0;
        switch (io.format) {
          case IoFormat::kFp32Chw:
            di = c * hw + p;
            break;
          case IoFormat::kFp16Chw16:
            di = ((c / 16) * hw + p) * 16 + c % 16;
            break;
          case IoFormat::kInt8Chw32:
            di = ((c / 32) * hw + p) * 32 + c % 32;
            break;
          case IoFormat::kInt8Hwc4:
            di = p * 4 + c;
            break;
        }
        if (c >= io.channels) {
          std::memset(dst + di * element_size(target.type), 0, element_size(target.type));
          continue;
        }
        move_element(t, x, p * t.layout.stride + c, target, dst, di);
      }
  }
  return Status::ok();
}

}  // namespace qyolo::cpu_engine
