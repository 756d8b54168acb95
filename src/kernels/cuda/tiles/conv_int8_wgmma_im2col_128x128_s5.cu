// One tile variant of the INT8 convolution (conv_int8_params.h lists them), in its own
// translation unit so the variants compile in parallel. Its code exists for sm_90a only.
#include "../conv_int8_wgmma.cuh"

namespace qyolo::cuda {
template cudaError_t launch_conv_int8_wgmma_im2col<128, 128, 5>(const ConvInt8Params&, cudaStream_t);
}  // namespace qyolo::cuda
