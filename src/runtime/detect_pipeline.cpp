// The GPU detection pipeline (qyolo/detect_pipeline.h): cuda_ops' preprocess and detect around
// one module's hybrid submission. Built into the runtime in CUDA builds only.
#if defined(QYOLO_WITH_CUDA)
#include "qyolo/detect_pipeline.h"

#include <algorithm>

namespace qyolo::runtime {

Status DetectPipeline::supports(const Module& m) {
  if (m.inputs().size() != 1 || m.inputs()[0].channels != 3 ||
      m.inputs()[0].height != m.inputs()[0].width)
    return invalid_argument("the GPU pipeline takes one square 3-channel image input");
  const EngineIo& in = m.inputs()[0];
  if (in.format != IoFormat::kInt8Hwc4 && in.format != IoFormat::kFp32Chw)
    return unsupported("input '", in.name, "' is ", io_format_name(in.format),
                       "; the GPU preprocess writes int8:hwc4 or fp32:chw");
  if (m.outputs().size() != 3)
    return invalid_argument("expected the three head outputs, got ", m.outputs().size());
  const IoFormat head_format = m.outputs()[0].format;
  for (const EngineIo& io : m.outputs()) {
    if (io.format != head_format ||
        (io.format != IoFormat::kFp16Chw16 && io.format != IoFormat::kInt8Chw32))
      return unsupported("output '", io.name, "' is ", io_format_name(io.format),
                         "; GPU detect reads fp16:chw16 or int8:chw32 heads, all alike");
    if (io.channels % 3 != 0 || io.channels / 3 <= 5 || io.channels != m.outputs()[0].channels)
      return invalid_argument("output '", io.name, "' has ", io.channels,
                              " channels; a head has 3 x (5 + classes)");
  }
  return Status::ok();
}

Expected<std::unique_ptr<DetectPipeline>> DetectPipeline::create(Device& device,
                                                                 std::unique_ptr<Module> module,
                                                                 int max_batch,
                                                                 DetectPipelineOptions options) {
  if (device.target() != EngineTarget::kCuda)
    return invalid_argument("the GPU pipeline needs a device of the cuda target");
  QYOLO_RETURN_IF_ERROR(supports(*module));
  if (max_batch < 1 || max_batch > module->max_batch())
    return invalid_argument("batch ", max_batch, " outside the engine's 1..", module->max_batch());
  std::unique_ptr<DetectPipeline> p(new DetectPipeline());
  p->device_ = &device;
  p->module_ = std::move(module);
  p->max_batch_ = max_batch;
  const Module& m = *p->module_;
  const EngineIo& in = m.inputs()[0];
  p->input_format_ = in.format == IoFormat::kInt8Hwc4 ? cuda::PreprocessOutput::kInt8Hwc4
                                                      : cuda::PreprocessOutput::kFloat32Nchw;
  p->canvas_ = in.height;
  p->input_scale_ = in.scale;

  // Heads by grid size, largest (stride 8) first.
  std::vector<int> order = {0, 1, 2};
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return m.outputs()[a].height > m.outputs()[b].height; });
  cuda::DetectArgs& d = p->detect_;
  cuda::HeadsArgs& h = d.heads;
  const bool int8_heads = m.outputs()[0].format == IoFormat::kInt8Chw32;
  h.type = int8_heads ? cuda::HeadType::kInt8 : cuda::HeadType::kFloat16;
  h.classes = m.outputs()[0].channels / 3 - 5;
  h.batch = max_batch;
  if (!int8_heads) {  // the CPU's sigmoid of every half value: decoded values bit for bit
    const std::vector<float> table = cuda::half_sigmoid_table();
    QYOLO_ASSIGN_OR_RETURN(p->half_sigmoid_,
                           cuda::DeviceBuffer::allocate(table.size() * sizeof(float)));
    QYOLO_RETURN_IF_ERROR(p->half_sigmoid_.upload(table.data(), table.size() * sizeof(float)));
    h.half_sigmoid = p->half_sigmoid_.as<float>();
  }
  for (int l = 0; l < 3; ++l) {
    h.heads[l].stride = options.strides[l];
    std::copy(options.anchors[l], options.anchors[l] + 6, h.heads[l].anchors);
  }

  Task& t = p->task_;
  t.module = p->module_.get();
  QYOLO_ASSIGN_OR_RETURN(p->input_,
                         cuda::DeviceBuffer::allocate(size_t(in.image_bytes()) * max_batch));
  QYOLO_ASSIGN_OR_RETURN(auto r, device.register_memory(p->input_.data(), p->input_.size()));
  t.inputs.push_back(r.get());
  p->registered_.push_back(std::move(r));
  for (int l = 0; l < 3; ++l) {
    const EngineIo& io = m.outputs()[order[l]];
    QYOLO_ASSIGN_OR_RETURN(auto b,
                           cuda::DeviceBuffer::allocate(size_t(io.image_bytes()) * max_batch));
    h.heads[l].data = b.data();
    h.heads[l].height = io.height;
    h.heads[l].width = io.width;
    h.heads[l].channel_block = int8_heads ? 32 : 16;
    h.scales[l] = io.scale;
    p->outputs_[order[l]] = std::move(b);
  }
  for (auto& b : p->outputs_) {
    QYOLO_ASSIGN_OR_RETURN(auto reg, device.register_memory(b.data(), b.size()));
    t.outputs.push_back(reg.get());
    p->registered_.push_back(std::move(reg));
  }
  d.conf_threshold = options.conf_threshold;
  d.iou_threshold = options.iou_threshold;
  d.max_det = options.max_det;
  d.max_nms = options.max_nms;
  d.multi_label = options.multi_label;
  QYOLO_ASSIGN_OR_RETURN(p->plans_,
                         cuda::DeviceBuffer::allocate(sizeof(cuda::LetterboxPlan) * max_batch));
  QYOLO_ASSIGN_OR_RETURN(p->workspace_,
                         cuda::DeviceBuffer::allocate(cuda::detect_workspace_bytes(d)));
  QYOLO_ASSIGN_OR_RETURN(p->boxes_, cuda::DeviceBuffer::allocate(sizeof(cuda::DetectionBox) *
                                                                 d.max_det * max_batch));
  QYOLO_ASSIGN_OR_RETURN(p->counts_, cuda::DeviceBuffer::allocate(2 * sizeof(int) * max_batch));
  d.plans = p->plans_.as<cuda::LetterboxPlan>();
  d.workspace = p->workspace_.data();
  d.detections = p->boxes_.as<cuda::DetectionBox>();
  d.counts = p->counts_.as<int>();
  d.candidate_counts = p->counts_.as<int>() + max_batch;
  return p;
}

Status DetectPipeline::set_batch(const std::vector<cuda::PreprocessImage>& images) {
  if (images.empty() || int(images.size()) > max_batch_)
    return invalid_argument("a batch of ", images.size(), " images; the pipeline takes 1..",
                            max_batch_);
  for (const auto& im : images)
    if (im.plan.canvas != canvas_)
      return invalid_argument("an image planned for a ", im.plan.canvas,
                              "-pixel canvas; the engine's input is ", canvas_);
  batch_ = images;
  std::vector<cuda::LetterboxPlan> plans;
  for (const auto& im : images) plans.push_back(im.plan);
  return plans_.upload(plans.data(), plans.size() * sizeof(plans[0]));
}

Status DetectPipeline::enqueue_preprocess(cudaStream_t stream) {
  cuda::PreprocessArgs a;
  a.images = batch_.data();
  a.count = int(batch_.size());
  a.canvas = canvas_;
  a.output_format = input_format_;
  a.input_scale = input_scale_;
  a.output = input_.data();
  return cuda::preprocess(a, stream);
}

Status DetectPipeline::enqueue_network(cudaStream_t stream) {
  task_.batch = int(batch_.size());
  return device_->submit(task_, stream);
}

Status DetectPipeline::enqueue_detect(cudaStream_t stream) {
  cuda::DetectArgs d = detect_;
  d.heads.batch = int(batch_.size());
  return cuda::detect(d, stream);
}

Status DetectPipeline::enqueue_pipeline(cudaStream_t stream) {
  QYOLO_RETURN_IF_ERROR(enqueue_preprocess(stream));
  QYOLO_RETURN_IF_ERROR(enqueue_network(stream));
  return enqueue_detect(stream);
}

}  // namespace qyolo::runtime
#endif  // QYOLO_WITH_CUDA
