// NHWC int8 / fp16 slices -> the I/O formats of DESIGN.md (fp16:chw16, int8:chw32, fp32 NCHW).
// Every padded channel is written (zero). The blocked formats: one thread per 32-byte chunk
// (one pixel's channel block, contiguous on both sides: a straight 16-byte-vector copy when
// the types match and the block is whole); fp32 NCHW: one thread per output element.
#include <algorithm>

#include "ops_common.cuh"

namespace qyolo::cuda {
namespace {

int block_of(ReformatOutput f) {
  return f == ReformatOutput::kFloat16Chw16 ? 16 : f == ReformatOutput::kInt8Chw32 ? 32 : 1;
}

// fp32 NCHW: one thread per output element.
template <ReformatInput kIn>
__global__ void reformat_fp32_kernel(ReformatArgs a, int64_t total) {
  wait_for_previous_kernel();
  const int64_t hw = int64_t{a.shape.height} * a.shape.width;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = i % hw;
    const int64_t nc = i / hw;
    const int c = static_cast<int>(nc % a.shape.channels);
    const int64_t n = nc / a.shape.channels;
    const int64_t from = (n * hw + p) * a.x_layout.stride + a.x_layout.offset + c;
    float v;
    if constexpr (kIn == ReformatInput::kInt8)
      v = __fmul_rn(static_cast<float>(static_cast<const int8_t*>(a.x)[from]), a.input_scale);
    else
      v = ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]);
    static_cast<float*>(a.y)[i] = v;
  }
}

// One element of a blocked output: channel c of the input element at `from` (0 past the
// channels).
template <ReformatInput kIn, ReformatOutput kOut>
__device__ __forceinline__ void convert_one(const ReformatArgs& a, int64_t from, bool real,
                                            void* out) {
  if constexpr (kOut == ReformatOutput::kInt8Chw32) {
    int8_t v = 0;
    if (real) {
      if constexpr (kIn == ReformatInput::kInt8)
        v = static_cast<const int8_t*>(a.x)[from];
      else
        v = ops::quantize_rne(ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]),
                              a.output_scale);
    }
    *static_cast<int8_t*>(out) = v;
  } else {
    float v = 0.0f;
    if (real) {
      if constexpr (kIn == ReformatInput::kInt8)
        v = __fmul_rn(static_cast<float>(static_cast<const int8_t*>(a.x)[from]), a.input_scale);
      else
        v = ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]);
    }
    *static_cast<uint16_t*>(out) = ops::half_bits(v);
  }
}

// Blocked outputs (fp16:chw16, int8:chw32): chunk t = (n, channel block, pixel), pixel fastest.
template <ReformatInput kIn, ReformatOutput kOut>
__global__ void reformat_blocked_kernel(ReformatArgs a, int64_t chunks, int hw, int blocks) {
  constexpr bool kInt8Out = kOut == ReformatOutput::kInt8Chw32;
  constexpr int kBlock = kInt8Out ? 32 : 16;
  constexpr int kOutBytes = kInt8Out ? 1 : 2;
  constexpr bool kCopy = kInt8Out == (kIn == ReformatInput::kInt8);  // same element type
  wait_for_previous_kernel();
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < chunks;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int p = static_cast<int>(t % hw);
    const int64_t nb = t / hw;
    const int c0 = static_cast<int>(nb % blocks) * kBlock;
    const int64_t n = nb / blocks;
    const int64_t from = (n * hw + p) * a.x_layout.stride + a.x_layout.offset + c0;
    char* out = static_cast<char*>(a.y) + t * (kBlock * kOutBytes);
    if constexpr (kCopy) {
      const char* in = static_cast<const char*>(a.x) + from * kOutBytes;
      if (c0 + kBlock <= a.shape.channels &&
          ((reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out)) & 15) == 0) {
        const int4* src = reinterpret_cast<const int4*>(in);
        int4* dst = reinterpret_cast<int4*>(out);
        dst[0] = src[0];
        dst[1] = src[1];
        continue;
      }
    }
#pragma unroll 4
    for (int lane = 0; lane < kBlock; ++lane)
      convert_one<kIn, kOut>(a, from + lane, c0 + lane < a.shape.channels, out + lane * kOutBytes);
  }
}

template <ReformatInput kIn>
void launch(const ReformatArgs& a, int64_t total, cudaStream_t stream) {
  if (a.output_format != ReformatOutput::kFloat32Nchw) {
    const int block = block_of(a.output_format);
    const int hw = a.shape.height * a.shape.width;
    const int blocks = (a.shape.channels + block - 1) / block;
    const int64_t chunks = total / block;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>((chunks + 255) / 256, 65536));
    if (a.output_format == ReformatOutput::kInt8Chw32)
      launch_kernel<reformat_blocked_kernel<kIn, ReformatOutput::kInt8Chw32>>(
          dim3(grid), dim3(256), 0, stream, a, chunks, hw, blocks);
    else
      launch_kernel<reformat_blocked_kernel<kIn, ReformatOutput::kFloat16Chw16>>(
          dim3(grid), dim3(256), 0, stream, a, chunks, hw, blocks);
    return;
  }
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
  launch_kernel<reformat_fp32_kernel<kIn>>(dim3(grid), dim3(256), 0, stream, a, total);
}

}  // namespace

size_t reformat_output_elements(const NhwcShape& s, ReformatOutput format) {
  const int block = block_of(format);
  return size_t(s.batch) * ((s.channels + block - 1) / block) * block * s.height * s.width;
}

Status reformat(const ReformatArgs& a, cudaStream_t stream) {
  constexpr const char* kOp = "reformat";
  QYOLO_RETURN_IF_ERROR(ops::check_shape(kOp, a.shape));
  QYOLO_RETURN_IF_ERROR(ops::check_slice(kOp, "x", a.x_layout, a.shape.channels, a.x));
  if (!a.y) return invalid_argument(kOp, ": y is null");
  if (a.input_type == ReformatInput::kInt8)
    QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "input_scale", a.input_scale));
  if (a.input_type == ReformatInput::kFloat16 && a.output_format == ReformatOutput::kInt8Chw32)
    QYOLO_RETURN_IF_ERROR(ops::check_scale(kOp, "output_scale", a.output_scale));
  const int64_t total = static_cast<int64_t>(reformat_output_elements(a.shape, a.output_format));
  if (a.input_type == ReformatInput::kInt8)
    launch<ReformatInput::kInt8>(a, total, stream);
  else
    launch<ReformatInput::kFloat16>(a, total, stream);
  return ops::launched(kOp);
}

}  // namespace qyolo::cuda
