// Generic element-by-element engine layers (engine_layers.h). Every float operation that the
// CPU backend rounds is written as an explicitly rounded intrinsic (__fmul_rn, __fadd_rn,
// __fdiv_rn), so nvcc cannot contract it into an FMA and the results stay those of the CPU.
#include <cuda_fp16.h>

#include <algorithm>

#include "../launch.cuh"
#include "engine_layers.h"
#include "qyolo/cuda.h"

namespace qyolo::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float load(const ElementView& v, int64_t at) {
  if (v.type == 1) return __fmul_rn(float(static_cast<const int8_t*>(v.data)[at]), v.scale);
  if (v.type == 2) return __half2float(static_cast<const __half*>(v.data)[at]);
  return static_cast<const float*>(v.data)[at];
}

// clamp(round_half_even(y / scale), -128, 127), as quantize_rne in qyolo/conv_int8.h.
__device__ inline int8_t quantize(float y, float scale) {
  const float q = rintf(__fdiv_rn(y, scale));
  return int8_t(fminf(fmaxf(q, -128.0f), 127.0f));
}

__device__ inline void store(const ElementView& v, int64_t at, float value) {
  if (v.type == 1)
    static_cast<int8_t*>(v.data)[at] = quantize(value, v.scale);
  else if (v.type == 2)
    static_cast<__half*>(v.data)[at] = __float2half_rn(value);
  else
    static_cast<float*>(v.data)[at] = value;
}

// The CPU backend's move_element: int8 -> int8 requantizes only when the scales differ,
// fp16 -> fp16 copies the bits, anything else goes through float.
__device__ inline void move(const ElementView& src, int64_t si, const ElementView& dst,
                            int64_t di) {
  if (src.type == 1 && dst.type == 1) {
    const int8_t q = static_cast<const int8_t*>(src.data)[si];
    static_cast<int8_t*>(dst.data)[di] =
        src.scale == dst.scale ? q : quantize(__fmul_rn(float(q), src.scale), dst.scale);
  } else if (src.type == 2 && dst.type == 2) {
    static_cast<uint16_t*>(dst.data)[di] = static_cast<const uint16_t*>(src.data)[si];
  } else {
    store(dst, di, load(src, si));
  }
}

// The value order of a tensor: int8 compares its codes (scales are positive).
__device__ inline float order_value(const ElementView& v, int64_t at) {
  return v.type == 1 ? float(static_cast<const int8_t*>(v.data)[at]) : load(v, at);
}

__global__ void engine_layer_kernel(EngineLayerArgs a) {
  wait_for_previous_kernel();
  const int64_t hw = int64_t(a.height) * a.width;
  const int64_t total = int64_t(a.batch) * hw * a.channels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % a.channels);
    const int64_t p = (i / a.channels) % hw;
    const int64_t n = i / (int64_t(a.channels) * hw);
    const int oh = int(p / a.width), ow = int(p % a.width);
    const int64_t di = n * a.y.image_elements + p * a.y.stride + c;
    const int64_t x_image = n * a.x.image_elements;
    switch (a.op) {
      case EngineLayerOp::kMaxPool: {
        int64_t best = -1;
        float best_value = 0.0f;
        for (int kr = 0; kr < a.kernel; ++kr) {
          const int ih = oh * a.stride - a.pad + kr;
          if (ih < 0 || ih >= a.in_height) continue;
          for (int kc = 0; kc < a.kernel; ++kc) {
            const int iw = ow * a.stride - a.pad + kc;
            if (iw < 0 || iw >= a.in_width) continue;
            const int64_t at = x_image + (int64_t(ih) * a.in_width + iw) * a.x.stride + c;
            const float v = order_value(a.x, at);
            if (best < 0 || v > best_value) {
              best = at;
              best_value = v;
            }
          }
        }
        move(a.x, best, a.y, di);
        break;
      }
      case EngineLayerOp::kResizeNearest: {
        const int64_t si =
            x_image + (int64_t(oh / a.factor) * a.in_width + ow / a.factor) * a.x.stride + c;
        move(a.x, si, a.y, di);
        break;
      }
      case EngineLayerOp::kConvert:
        move(a.x, x_image + p * a.x.stride + c, a.y, di);
        break;
      case EngineLayerOp::kAdd:
      case EngineLayerOp::kMul: {
        const float u = load(a.x, x_image + p * a.x.stride + c);
        const float v = load(a.x2, n * a.x2.image_elements + p * a.x2.stride + c);
        store(a.y, di, a.op == EngineLayerOp::kAdd ? __fadd_rn(u, v) : __fmul_rn(u, v));
        break;
      }
      case EngineLayerOp::kSigmoid: {
        const float u = load(a.x, x_image + p * a.x.stride + c);
        store(a.y, di, __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-u))));
        break;
      }
      case EngineLayerOp::kTable:
        static_cast<int8_t*>(a.y.data)[di] =
            a.table[static_cast<const int8_t*>(a.x.data)[x_image + p * a.x.stride + c] + 128];
        break;
    }
  }
}

int blocks_for(int64_t total) {
  return int(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16));
}

// Element index of channel c, pixel p in one image of an I/O format (DESIGN.md formats).
__device__ inline int64_t io_index(int format, int64_t hw, int64_t p, int c) {
  switch (format) {
    case 2:
      return ((c / 16) * hw + p) * 16 + c % 16;
    case 3:
      return ((c / 32) * hw + p) * 32 + c % 32;
    case 4:
      return p * 4 + c;
    default:
      return c * hw + p;
  }
}

__device__ inline int io_type(int format) { return format == 1 ? 3 : format == 2 ? 2 : 1; }

__device__ inline int io_padded_channels(int format, int channels) {
  return format == 2   ? (channels + 15) / 16 * 16
         : format == 3 ? (channels + 31) / 32 * 32
         : format == 4 ? 4
                       : channels;
}

__global__ void input_reformat_kernel(InputReformatArgs a) {
  wait_for_previous_kernel();
  const int64_t hw = int64_t(a.height) * a.width;
  const int c_end = a.zero_padding ? a.y.stride : a.channels;
  const int64_t total = int64_t(a.batch) * hw * c_end;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % c_end);
    const int64_t p = (i / c_end) % hw;
    const int64_t n = i / (int64_t(c_end) * hw);
    const int64_t di = n * a.y.image_elements + p * a.y.stride + c;
    if (c >= a.channels) {
      const int size = a.y.type == 1 ? 1 : a.y.type == 2 ? 2 : 4;
      for (int b = 0; b < size; ++b) static_cast<uint8_t*>(a.y.data)[di * size + b] = 0;
      continue;
    }
    ElementView src;
    src.type = io_type(a.format);
    src.scale = a.src_scale;
    src.data = const_cast<uint8_t*>(static_cast<const uint8_t*>(a.src) + n * a.src_image_bytes);
    move(src, io_index(a.format, hw, p, c), a.y, di);
  }
}

__global__ void output_reformat_kernel(OutputReformatArgs a) {
  wait_for_previous_kernel();
  const int64_t hw = int64_t(a.height) * a.width;
  const int padded = io_padded_channels(a.format, a.channels);
  const int64_t total = int64_t(a.batch) * hw * padded;
  const int type = io_type(a.format);
  const int size = type == 1 ? 1 : type == 2 ? 2 : 4;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % padded);
    const int64_t p = (i / padded) % hw;
    const int64_t n = i / (int64_t(padded) * hw);
    ElementView dst;
    dst.type = type;
    dst.scale = a.dst_scale;
    dst.data = static_cast<uint8_t*>(a.dst) + n * a.dst_image_bytes;
    const int64_t di = io_index(a.format, hw, p, c);
    if (c >= a.channels) {
      for (int b = 0; b < size; ++b) static_cast<uint8_t*>(dst.data)[di * size + b] = 0;
      continue;
    }
    move(a.x, n * a.x.image_elements + p * a.x.stride + c, dst, di);
  }
}

}  // namespace

Status engine_layer(const EngineLayerArgs& args, cudaStream_t stream) {
  const int64_t total = int64_t(args.batch) * args.height * args.width * args.channels;
  if (total <= 0) return Status::ok();
  if (!args.x.data || !args.y.data ||
      ((args.op == EngineLayerOp::kAdd || args.op == EngineLayerOp::kMul) && !args.x2.data))
    return invalid_argument("engine_layer: null tensor");
  if (args.op == EngineLayerOp::kTable && (!args.table || args.x.type != 1 || args.y.type != 1))
    return invalid_argument("engine_layer: a table needs int8 tensors and the table");
  launch_kernel<engine_layer_kernel>(dim3(blocks_for(total)), dim3(kThreads), 0, stream, args);
  return check(cudaGetLastError(), "engine_layer launch");
}

Status engine_input_reformat(const InputReformatArgs& args, cudaStream_t stream) {
  const int c_end = args.zero_padding ? args.y.stride : args.channels;
  const int64_t total = int64_t(args.batch) * args.height * args.width * c_end;
  if (total <= 0) return Status::ok();
  if (!args.src || !args.y.data) return invalid_argument("engine_input_reformat: null buffer");
  launch_kernel<input_reformat_kernel>(dim3(blocks_for(total)), dim3(kThreads), 0, stream, args);
  return check(cudaGetLastError(), "engine_input_reformat launch");
}

Status engine_output_reformat(const OutputReformatArgs& args, cudaStream_t stream) {
  const int64_t total = int64_t(args.batch) * args.height * args.width * (args.channels + 31);
  if (total <= 0) return Status::ok();
  if (!args.dst || !args.x.data) return invalid_argument("engine_output_reformat: null buffer");
  launch_kernel<output_reformat_kernel>(dim3(blocks_for(total)), dim3(kThreads), 0, stream, args);
  return check(cudaGetLastError(), "engine_output_reformat launch");
}

}  // namespace qyolo::cuda
