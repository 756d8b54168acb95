// The whole detection pipeline of an engine on the cuda target, on the GPU: uint8 RGB images in
// device memory -> cuda::preprocess (the CPU letterbox, bit for bit) -> the engine (hybrid
// submission) -> cuda::detect (decode and the validation NMS) -> boxes in original pixels.
// `qyolo val/detect --loadEngine` use it on the cuda target (src/vision/detector_engine.cpp),
// bench/cuda_engine/e2e_cuda_engine times it. CUDA code: needs a QYOLO_CUDA build.
//
// Every enqueue_* call only enqueues on the given stream (nothing synchronizes), so a whole
// batch can be captured into a CUDA graph; set_batch uploads the letterbox plans synchronously
// and belongs outside any capture.
#pragma once

#include <memory>
#include <vector>

#include "qyolo/cuda.h"
#include "qyolo/cuda_ops.h"
#include "qyolo/runtime.h"

namespace qyolo::runtime {

struct DetectPipelineOptions {
  float conf_threshold = 0.001f, iou_threshold = 0.6f;  // class-aware
  int max_det = 300, max_nms = 30000;
  bool multi_label = true;  // false: each box's best class only (cuda::DetectArgs)
  // The heads' strides and anchors (w, h x 3, pixels), stride 8 first: YOLOv5's by default.
  float strides[3] = {8, 16, 32};
  float anchors[3][6] = {
      {10, 13, 16, 30, 33, 23}, {30, 61, 62, 45, 59, 119}, {116, 90, 156, 198, 373, 326}};
};

class DetectPipeline {
 public:
  // Ok when `module` fits the pipeline: one 3-channel square input in int8:hwc4 or fp32:chw,
  // three head outputs all in fp16:chw16 or all in int8:chw32; otherwise why not, naming the
  // tensor (the caller may then run the host's letterbox and NMS instead).
  static Status supports(const Module& module);
  // Takes the module (loaded on `device`, the cuda target) and device memory for `max_batch`
  // images: the input, the three heads, the plans, detect's workspace, boxes and counts.
  static Expected<std::unique_ptr<DetectPipeline>> create(Device& device,
                                                          std::unique_ptr<Module> module,
                                                          int max_batch,
                                                          DetectPipelineOptions options = {});

  Module& module() { return *module_; }
  int canvas() const { return canvas_; }
  int max_batch() const { return max_batch_; }
  int max_det() const { return detect_.max_det; }
  // Candidates one image may have before the max_nms cut; an image with more is not exact.
  int max_candidates() const { return detect_.max_candidates; }

  // The next batch: its images (device pixels with their letterbox plans, at most max_batch).
  // Uploads the plans synchronously; the pixels must stay valid until the batch has run.
  Status set_batch(const std::vector<cuda::PreprocessImage>& images);
  int batch() const { return int(batch_.size()); }

  Status enqueue_preprocess(cudaStream_t stream);
  Status enqueue_network(cudaStream_t stream);
  Status enqueue_detect(cudaStream_t stream);
  Status enqueue_pipeline(cudaStream_t stream);  // the three in order

  // Results of the last batch, device memory: boxes [max_batch][max_det] in score order, then
  // counts: [max_batch] kept boxes per image, then [max_batch] candidates before the cut.
  const cuda::DeviceBuffer& boxes() const { return boxes_; }
  const cuda::DeviceBuffer& counts() const { return counts_; }
  // The engine's outputs in the module's order (its format, batch images), for a host decode.
  const cuda::DeviceBuffer& output(int index) const { return outputs_[index]; }

 private:
  DetectPipeline() = default;
  Device* device_ = nullptr;
  std::unique_ptr<Module> module_;
  std::vector<std::unique_ptr<RegisteredMemory>> registered_;
  Task task_;
  int canvas_ = 640, max_batch_ = 1;
  cuda::PreprocessOutput input_format_ = cuda::PreprocessOutput::kInt8Hwc4;
  float input_scale_ = 1.0f;
  cuda::DeviceBuffer input_, outputs_[3], plans_, workspace_, boxes_, counts_, half_sigmoid_;
  cuda::DetectArgs detect_;
  std::vector<cuda::PreprocessImage> batch_;
};

}  // namespace qyolo::runtime
