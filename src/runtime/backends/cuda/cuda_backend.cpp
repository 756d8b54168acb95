// The CUDA backend's slot. The backend itself (engine layers on cuda_conv.h / cuda_ops.h
// kernels, hybrid submission on the caller's stream, standalone fences on CUDA events) is the
// next step, documented in docs/runtime.md; until it exists, asking for the cuda target is a
// clear error rather than a silent fallback.
#include "qyolo/runtime.h"

namespace qyolo::runtime {

Expected<std::unique_ptr<Backend>> make_cuda_backend(int device) {
#if defined(QYOLO_WITH_CUDA)
  return unsupported(
      "target cuda: the CUDA backend of the runtime is not implemented yet "
      "(device ",
      device, "); build and run --target cpu engines for now");
#else
  (void)device;
  return unsupported("target cuda: qyolo was built without QYOLO_CUDA");
#endif
}

}  // namespace qyolo::runtime
