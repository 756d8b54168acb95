// One tile variant of the INT8 convolution (conv_int8_params.h lists them), in its own
// translation unit so the variants compile in parallel.
#include "../conv_int8_mma.cuh"

namespace qyolo::cuda {
template cudaError_t launch_conv_int8_mma<64, 32, 2, 2, 4, false>(const ConvInt8Params&,
                                                                    cudaStream_t);
}  // namespace qyolo::cuda
