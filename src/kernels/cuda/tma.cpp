// Tensor maps for the sm_90 copy engine. cuTensorMapEncodeTiled and cuTensorMapEncodeIm2col are
// driver functions, reached through the runtime's entry-point query, so the library links only
// against cudart.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include "conv_int8_params.h"

namespace qyolo::cuda {
namespace {

// A driver function by name (CUDA 12.0's signature), or null where the driver lacks it.
template <typename Fn>
Fn driver_function(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return reinterpret_cast<Fn>(fn);
}

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const auto encode =
      driver_function<PFN_cuTensorMapEncodeTiled_v12000>("cuTensorMapEncodeTiled");
  return encode;
}

PFN_cuTensorMapEncodeIm2col_v12000 im2col_map_encoder() {
  static const auto encode =
      driver_function<PFN_cuTensorMapEncodeIm2col_v12000>("cuTensorMapEncodeIm2col");
  return encode;
}

}  // namespace

cudaError_t encode_tma_im2col(CUtensorMap* map, const ConvInt8Params& p, uint32_t box_pixels) {
  const PFN_cuTensorMapEncodeIm2col_v12000 encode = im2col_map_encoder();
  if (!encode) return cudaErrorNotSupported;
  const uint64_t batch = uint64_t(p.pixels) / (uint64_t(p.out_h) * p.out_w);
  const cuuint64_t dims[4] = {cuuint64_t(p.taps_channels), cuuint64_t(p.in_w), cuuint64_t(p.in_h),
                              batch};
  const uint64_t pixel = uint64_t(p.in_stride);
  const cuuint64_t strides[3] = {pixel, pixel * p.in_w, pixel * p.in_w * p.in_h};
  // The window origins' bounding box, W first: from -pad to the last origin (pad - (k - 1)
  // from the far edge), walked with the stride; the taps are the copy's offsets.
  const int lower[2] = {-p.pad, -p.pad};
  const int upper[2] = {p.pad - (p.kernel - 1), p.pad - (p.kernel - 1)};
  const cuuint32_t element_strides[4] = {1, cuuint32_t(p.stride), cuuint32_t(p.stride), 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<int8_t*>(p.input),
                            dims, strides, lower, upper, 64, box_pixels, element_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_64B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t encode_tma_2d(CUtensorMap* map, const void* base, uint64_t inner, uint64_t outer,
                          uint64_t row_bytes, uint32_t box_inner, uint32_t box_outer) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (!encode) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {inner, outer};
  const cuuint64_t strides[1] = {row_bytes};
  const cuuint32_t box[2] = {box_inner, box_outer};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r =
      encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box,
             element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_64B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace qyolo::cuda
