# The runtime's sources (engine file, device/module/task API, CPU backend, CUDA backend slot,
# the GPU detection pipeline: empty without QYOLO_CUDA),
# relative to the project root: shared by the main build and the standalone CUDA build
# (bench/cuda_conv), which has nothing but CUDA, CMake and a compiler.
set(QYOLO_RUNTIME_SOURCES
  src/engine/engine_file.cpp
  src/runtime/runtime.cpp
  src/runtime/backends/cpu/engine_backend.cpp
  src/runtime/backends/cpu/engine_conv.cpp
  src/runtime/backends/cpu/engine_pointwise.cpp
  src/runtime/backends/cuda/cuda_backend.cpp
  src/runtime/detect_pipeline.cpp
)
