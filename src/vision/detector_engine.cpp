// The detector on an engine file: the letterboxed float image packed into the engine's input
// format, one task on the engine's target, the head outputs unpacked to float for the decode.
#include "qyolo/detector.h"
#include "qyolo/runtime.h"

namespace qyolo {

struct Detector::EngineRunner {
  std::unique_ptr<runtime::Device> device;
  std::unique_ptr<runtime::Module> module;
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
  runner->module = std::move(*module);
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
  runner->task.module = runner->module.get();
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
  detector->input_name_ = m.inputs()[0].name;
  detector->options_ = options;
  detector->engine_ = std::move(runner);
  return detector;
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
  const Engine& e = engine_->module->engine();
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
