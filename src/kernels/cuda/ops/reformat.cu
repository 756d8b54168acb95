// NHWC int8 / fp16 slices -> the I/O formats of DESIGN.md (fp16:chw16, int8:chw32, fp32 NCHW).
// One thread per output element, so every padded channel is written (zero).
#include <algorithm>

#include "ops_common.cuh"

namespace qyolo::cuda {
namespace {

int block_of(ReformatOutput f) {
  return f == ReformatOutput::kFloat16Chw16 ? 16 : f == ReformatOutput::kInt8Chw32 ? 32 : 1;
}

template <ReformatInput kIn, ReformatOutput kOut>
__global__ void reformat_kernel(ReformatArgs a, int64_t total) {
  constexpr int kBlock = kOut == ReformatOutput::kFloat16Chw16 ? 16
                         : kOut == ReformatOutput::kInt8Chw32  ? 32
                                                               : 1;
  const int64_t hw = int64_t{a.shape.height} * a.shape.width;
  const int blocks = (a.shape.channels + kBlock - 1) / kBlock;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    // Output order: n, channel block, pixel, lane (kBlock 1: n, channel, pixel).
    const int lane = static_cast<int>(i % kBlock);
    const int64_t p = (i / kBlock) % hw;
    const int64_t nb = i / (kBlock * hw);
    const int block = static_cast<int>(nb % blocks);
    const int64_t n = nb / blocks;
    const int c = block * kBlock + lane;
    const bool real = c < a.shape.channels;
    const int64_t from = (n * hw + p) * a.x_layout.stride + a.x_layout.offset + c;
    if constexpr (kOut == ReformatOutput::kInt8Chw32) {
      int8_t v = 0;
      if (real) {
        if constexpr (kIn == ReformatInput::kInt8) {
          v = static_cast<const int8_t*>(a.x)[from];
        } else {
          v = ops::quantize_rne(ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]),
                                a.output_scale);
        }
      }
      static_cast<int8_t*>(a.y)[i] = v;
    } else {
      float v = 0.0f;
      if (real) {
        if constexpr (kIn == ReformatInput::kInt8) {
          v = __fmul_rn(static_cast<float>(static_cast<const int8_t*>(a.x)[from]), a.input_scale);
        } else {
          v = ops::from_half_bits(static_cast<const uint16_t*>(a.x)[from]);
        }
      }
      if constexpr (kOut == ReformatOutput::kFloat16Chw16)
        static_cast<uint16_t*>(a.y)[i] = ops::half_bits(v);
      else
        static_cast<float*>(a.y)[i] = v;
    }
  }
}

template <ReformatInput kIn>
void launch(const ReformatArgs& a, int64_t total, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
  switch (a.output_format) {
    case ReformatOutput::kFloat16Chw16:
      reformat_kernel<kIn, ReformatOutput::kFloat16Chw16><<<grid, 256, 0, stream>>>(a, total);
      break;
    case ReformatOutput::kInt8Chw32:
      reformat_kernel<kIn, ReformatOutput::kInt8Chw32><<<grid, 256, 0, stream>>>(a, total);
      break;
    case ReformatOutput::kFloat32Nchw:
      reformat_kernel<kIn, ReformatOutput::kFloat32Nchw><<<grid, 256, 0, stream>>>(a, total);
      break;
  }
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
