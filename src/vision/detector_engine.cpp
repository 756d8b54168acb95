// The detector on an engine file. On the cuda target, where the engine's I/O formats allow,
// the whole pipeline runs on the GPU (qyolo/detect_pipeline.h: letterbox, network, decode and
// NMS; the same boxes as the host path). Otherwise, the host path: the letterboxed float image
// packed into the engine's input format, one task on the engine's target, the head outputs
// unpacked to float for the host's decode and NMS.
#include <chrono>

#include "qyolo/detector.h"
#include "qyolo/runtime.h"

#if defined(QYOLO_WITH_CUDA)
#include "qyolo/cuda.h"
#include "qyolo/detect_pipeline.h"
#endif

namespace qyolo {

struct Detector::EngineRunner {
  std::unique_ptr<runtime::Device> device;
  std::unique_ptr<runtime::Module> own_module;  // moved into `gpu` when there is one
  runtime::Module* module = nullptr;
#if defined(QYOLO_WITH_CUDA)
  std::unique_ptr<runtime::DetectPipeline> gpu;
  cuda::Stream stream;
  cuda::DeviceBuffer pixels;  // the image's RGB bytes, grown as needed
#endif
  std::vector<std::vector<uint8_t>> inputs, outputs;  // host: packed and unpacked here
  // The target's own memory where it is not the host's (CUDA): what the task reads and writes.
  std::vector<std::unique_ptr<runtime::BackendBuffer>> device_inputs, device_outputs;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> registered;
  runtime::Task task;
};

Expected<std::unique_ptr<Detector>> Detector::create_from_engine(const std::string& path,
                                                                 DetectorOptions options) {
  QYOLO_ASSIGN_OR_RETURN(Engine engine, load_engine(path));
  auto runner = std::make_shared<EngineRunner>();
  runtime::DeviceOptions device_options;
  device_options.device_index = options.device_index;
  QYOLO_ASSIGN_OR_RETURN(runner->device, runtime::Device::create(engine.target, device_options));
  auto module = runtime::Module::from_engine(*runner->device, std::move(engine));
  if (!module) return with_context(module.status(), path);
  runner->own_module = std::move(*module);
  runner->module = runner->own_module.get();
  const runtime::Module& m = *runner->module;
  if (m.inputs().size() != 1 || m.inputs()[0].channels != 3 ||
      m.inputs()[0].height != m.inputs()[0].width)
    return invalid_argument(path, ": a detector engine has one square 3-channel input");
  if (m.outputs().size() != 3)
    return invalid_argument(path, ": expected the three head outputs of a YOLOv5 engine, got ",
                            m.outputs().size());
  std::unique_ptr<Detector> detector(new Detector());
  detector->trimmed_ = true;
  detector->canvas_ = m.inputs()[0].height;
  if (options.canvas > 0 && options.canvas != detector->canvas_)
    return invalid_argument(path, ": the engine's input is ", detector->canvas_, " pixels, not ",
                            options.canvas);
  if (options.image_size > detector->canvas_)
    return invalid_argument("--imgsz ", options.image_size, " does not fit the engine's ",
                            detector->canvas_, "-pixel input");
  runner->task.module = runner->module;
  runner->task.batch = 1;
  const bool host_memory = runner->device->target() == EngineTarget::kCpu;
  for (const auto* list : {&m.inputs(), &m.outputs()}) {
    auto& buffers = list == &m.inputs() ? runner->inputs : runner->outputs;
    auto& device_buffers = list == &m.inputs() ? runner->device_inputs : runner->device_outputs;
    for (const EngineIo& io : *list) {
      buffers.emplace_back(size_t(io.image_bytes()));
      void* data = buffers.back().data();
      if (!host_memory) {
        QYOLO_ASSIGN_OR_RETURN(auto buffer,
                               runner->device->backend().allocate(buffers.back().size()));
        data = buffer->data();
        device_buffers.push_back(std::move(buffer));
      }
      QYOLO_ASSIGN_OR_RETURN(auto memory,
                             runner->device->register_memory(data, buffers.back().size()));
      (list == &m.inputs() ? runner->task.inputs : runner->task.outputs).push_back(memory.get());
      runner->registered.push_back(std::move(memory));
    }
  }
#if defined(QYOLO_WITH_CUDA)
  // The GPU pipeline's NMS is class-aware (multi-label or not); it runs one image at a time.
  if (!host_memory && !options.host_pipeline && !options.nms.agnostic &&
      runtime::DetectPipeline::supports(m).is_ok()) {
    runtime::DetectPipelineOptions p;
    p.conf_threshold = options.nms.conf_threshold;
    p.iou_threshold = options.nms.iou_threshold;
    p.max_det = options.nms.max_det;
    p.max_nms = options.nms.max_nms;
    p.multi_label = options.nms.multi_label;
    for (int l = 0; l < 3; ++l) {
      p.strides[l] = options.anchors.strides[l];
      std::copy(options.anchors.anchors[l].begin(), options.anchors.anchors[l].end(),
                p.anchors[l]);
    }
    QYOLO_ASSIGN_OR_RETURN(runner->stream, cuda::Stream::create());
    auto gpu = runtime::DetectPipeline::create(*runner->device, std::move(runner->own_module), 1, p);
    if (!gpu) return with_context(gpu.status(), path);
    runner->gpu = std::move(*gpu);
  }
#endif
  detector->input_name_ = m.inputs()[0].name;
  detector->options_ = options;
  detector->engine_ = std::move(runner);
  return detector;
}

std::string Detector::pipeline() const {
#if defined(QYOLO_WITH_CUDA)
  if (engine_ && engine_->gpu) return "gpu";
#endif
  return "host";
}

Expected<bool> Detector::detect_on_device(const Image& image, std::vector<Detection>* detections) {
#if defined(QYOLO_WITH_CUDA)
  EngineRunner& r = *engine_;
  if (!r.gpu) return false;
  using clock = std::chrono::steady_clock;
  auto since = [](clock::time_point start) {
    return std::chrono::duration<double, std::milli>(clock::now() - start).count();
  };
  const size_t bytes = size_t(image.width) * image.height * 3;
  if (bytes == 0 || image.pixels.size() < bytes)
    return invalid_argument("an image of ", image.width, "x", image.height, " with ",
                            image.pixels.size(), " bytes of pixels");
  auto start = clock::now();
  if (r.pixels.size() < bytes) {
    r.pixels = cuda::DeviceBuffer();  // free first: the old and the new need not fit together
    QYOLO_ASSIGN_OR_RETURN(r.pixels, cuda::DeviceBuffer::allocate(bytes));
  }
  QYOLO_RETURN_IF_ERROR(r.pixels.upload(image.pixels.data(), bytes));
  cuda::PreprocessImage input;
  input.pixels = r.pixels.as<uint8_t>();
  input.row_bytes = image.width * 3;
  input.plan = cuda::letterbox_plan(image.width, image.height, options_.image_size, canvas_);
  QYOLO_RETURN_IF_ERROR(r.gpu->set_batch({input}));
  const cudaStream_t stream = r.stream.get();
  QYOLO_RETURN_IF_ERROR(r.gpu->enqueue_preprocess(stream));
  QYOLO_RETURN_IF_ERROR(r.stream.synchronize());
  times_.preprocess += since(start);

  start = clock::now();
  QYOLO_RETURN_IF_ERROR(r.gpu->enqueue_network(stream));
  QYOLO_RETURN_IF_ERROR(r.stream.synchronize());
  times_.inference += since(start);

  start = clock::now();
  QYOLO_RETURN_IF_ERROR(r.gpu->enqueue_detect(stream));
  QYOLO_RETURN_IF_ERROR(r.stream.synchronize());
  int counts[2];  // kept boxes, candidates before the cut (max_batch 1)
  QYOLO_RETURN_IF_ERROR(r.gpu->counts().download(counts, sizeof counts));
  // More candidates than the GPU's buffer holds: the host path gives the exact answer.
  if (counts[1] > r.gpu->max_candidates()) return false;
  std::vector<cuda::DetectionBox> boxes(static_cast<size_t>(counts[0]));
  if (!boxes.empty())
    QYOLO_RETURN_IF_ERROR(r.gpu->boxes().download(boxes.data(), boxes.size() * sizeof(boxes[0])));
  detections->clear();
  for (const cuda::DetectionBox& b : boxes)
    detections->push_back({b.x1, b.y1, b.x2, b.y2, b.score, b.class_id});
  times_.nms += since(start);
  ++times_.images;
  return true;
#else
  (void)image, (void)detections;
  return false;
#endif
}

Expected<std::map<std::string, Tensor>> Detector::run_engine(
    const std::map<std::string, Tensor>& inputs) {
  EngineRunner& r = *engine_;
  const runtime::Module& m = *r.module;
  runtime::pack_input(m.inputs()[0], 1, inputs.begin()->second.data<float>(), r.inputs[0].data());
  runtime::Backend& backend = r.device->backend();
  for (size_t i = 0; i < r.device_inputs.size(); ++i)
    QYOLO_RETURN_IF_ERROR(
        backend.upload(r.device_inputs[i]->data(), r.inputs[i].data(), r.inputs[i].size()));
  QYOLO_RETURN_IF_ERROR(r.device->run(r.task));
  for (size_t i = 0; i < r.device_outputs.size(); ++i)
    QYOLO_RETURN_IF_ERROR(
        backend.download(r.outputs[i].data(), r.device_outputs[i]->data(), r.outputs[i].size()));
  std::map<std::string, Tensor> outputs;
  for (size_t i = 0; i < m.outputs().size(); ++i) {
    const EngineIo& io = m.outputs()[i];
    Tensor t(DType::kFloat32, {1, io.channels, io.height, io.width});
    runtime::unpack_output(io, 1, r.outputs[i].data(), t.data<float>());
    outputs.emplace(io.name, std::move(t));
  }
  return outputs;
}

std::vector<LayerPrecision> Detector::engine_layer_precisions() const {
  std::vector<LayerPrecision> layers;
  const Engine& e = engine_->module->engine();  // owned here or by the GPU pipeline
  for (const EngineLayer& l : e.layers) {
    if (l.kind == LayerKind::kInputReformat || l.kind == LayerKind::kOutputReformat) continue;
    std::string reason;
    for (const EngineFallback& f : e.fallbacks)
      if (l.name.rfind(f.layer, 0) == 0) reason = f.reason;
    layers.push_back({l.name, l.op, element_type_name(l.precision), reason});
  }
  return layers;
}

}  // namespace qyolo
