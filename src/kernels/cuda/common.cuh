// Thin wrappers over the PTX instructions the INT8 kernels are built from: asynchronous
// global->shared copies with zero fill, ldmatrix, and the int8 tensor-core MMA (sm_80+).
#pragma once

#include <cstdint>

namespace qyolo::cuda::ptx {

__device__ __forceinline__ uint32_t smem_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16 bytes global -> shared, bypassing L1; `valid` false writes 16 zero bytes and reads nothing
// (src-size 0), which is how padding and out-of-range rows become zeros.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

// 4 bytes (one hwc4 pixel), zero-filled where `valid` is false.
__device__ __forceinline__ void cp_async_4(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

// 8 bytes (two hwc4 pixels of the stem), of which `src_bytes` (0, 4 or 8) are read and the
// rest zero-filled.
__device__ __forceinline__ void cp_async_8(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 b16 matrices (8 rows x 16 bytes each); lanes 8i..8i+7 give the row addresses of
// matrix i, and register i of lane l holds 4 bytes of row l/4 of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// D = A * B + D, A 16x32 int8 row-major, B 32x8 int8 column-major, D 16x8 int32.
__device__ __forceinline__ void mma_s8_16x8x32(int32_t (&d)[4], const uint32_t (&a)[4],
                                               const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ---- Hopper (sm_90a) warpgroup MMA plumbing

// Orders this thread's generic-proxy shared-memory writes (cp.async included) before reads by
// the async proxy (wgmma operands); each writing thread issues it before the barrier.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Descriptor of a K-major operand tile in shared memory: rows of 64 bytes in the 64-byte swizzle
// (16-byte chunk c of row r at chunk c ^ ((r >> 1) & 3)), 8-row groups 512 bytes apart, the tile
// 512-byte aligned. Adding 2 moves the start 32 bytes along K (the second k32 step).
__device__ __forceinline__ uint64_t smem_descriptor_sw64(uint32_t address) {
  uint64_t desc = (address & 0x3ffff) >> 4;  // start address, 16-byte units
  desc |= uint64_t{1} << 16;                 // leading byte offset: unused with a swizzle
  desc |= uint64_t{512 >> 4} << 32;          // stride byte offset: next 8 rows
  desc |= uint64_t{2} << 62;                 // layout: 64-byte swizzle
  return desc;
}

// ---- Hopper (sm_90) copy engine: bulk tensor copies completing on shared-memory mbarriers

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count));
#endif
}

// Makes the initialized barriers visible to the copy engine and the other threads.
__device__ __forceinline__ void fence_mbarrier_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// The arrival that completes the barrier's phase once `bytes` more have been copied in.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)),
               "r"(bytes)
               : "memory");
#endif
}

__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(smem_address(bar)),
      "r"(parity)
      : "memory");
#endif
}

// A 2D box of the tensor `map` (a __grid_constant__ kernel parameter) at (x, y) to shared memory;
// out-of-range elements are zero-filled and still counted in the barrier's bytes.
__device__ __forceinline__ void tma_load_2d(void* dst, const void* map, int x, int y, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];\n" ::"r"(smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(smem_address(bar))
      : "memory");
#endif
}

// im2col mode (a 4D NHWC tensor map from encode_tma_im2col): channels [c, c + the map's
// channels per pixel) of the map's pixels-per-column consecutive output pixels, the first at
// window origin (w, h) of image n, each read at tap (offset_w, offset_h) of its window;
// positions outside the tensor read zeros.
__device__ __forceinline__ void tma_load_im2col_4d(void* dst, const void* map, int c, int w, int h,
                                                   int n, uint16_t offset_w, uint16_t offset_h,
                                                   uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6], {%7, %8};\n" ::"r"(smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c), "r"(w), "r"(h), "r"(n), "r"(smem_address(bar)),
      "h"(offset_w), "h"(offset_h)
      : "memory");
#endif
}

}  // namespace qyolo::cuda::ptx
