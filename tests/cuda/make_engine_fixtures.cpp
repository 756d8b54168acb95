// Writes the fixtures of the CUDA engine test (test_cuda_engine.cpp) into a folder, on any
// machine with qyolo's build dependencies, so that the GPU machine needs only the runtime:
//   yolov5n_config{1,2,3}.engine  yolov5n for the cuda target, max batch 2, no memory reuse
//                                 (every tensor keeps its value, so each layer can be compared),
//                                 int8:hwc4 in, int8:chw32 (1) or fp16:chw16 (2, 3) out
//   images.f32                    2 x 3 x 640 x 640 float32, two letterboxed val2017-mini images
//
//   make_engine_fixtures <folder> [--if-gpu]   (data from QYOLO_DATA, default ../shared/data)
// --if-gpu writes nothing where no GPU is present (ctest's fixture step on GPU-less machines).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "qyolo/cuda.h"
#include "qyolo/engine_builder.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"

namespace {

using namespace qyolo;

std::filesystem::path data_dir() {
  const char* env = std::getenv("QYOLO_DATA");
  return env ? env : "../shared/data";
}

Expected<Tensor> load_image(const std::filesystem::path& path) {
  QYOLO_ASSIGN_OR_RETURN(auto image, read_image(path.string()));
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  image_to_tensor(letterbox(image, 640, 640, nullptr), x, 0);
  return x;
}

struct Options {
  std::string onnx;          // default: yolov5n from the data folder
  std::string name = "yolov5n";
  int max_batch = 2;
  bool reuse_memory = false;  // true: the planned arena, as an engine for deployment has it
  bool images = true;
};

Status run(const std::filesystem::path& out, const Options& options) {
  const std::filesystem::path data = data_dir();
  const std::string model =
      options.onnx.empty() ? (data / "models/yolov5n.onnx").string() : options.onnx;
  QYOLO_ASSIGN_OR_RETURN(Graph graph, load_onnx(model));
  // Scales: max |x| of every value on one calibration image (as the CPU engine test does).
  QYOLO_ASSIGN_OR_RETURN(Tensor calib, load_image(data / "coco/calib2017/images/000000012280.jpg"));
  std::vector<std::map<std::string, Tensor>> batches = {{{"images", calib}}};
  std::vector<std::string> probe = {"images"};
  for (const Node& n : graph.nodes)
    if (n.op_type != "Constant") probe.push_back(n.outputs[0]);
  QYOLO_ASSIGN_OR_RETURN(auto ranges, max_abs_ranges(graph, batches, probe));
  std::map<std::string, float> scales;
  for (const auto& [name, amax] : ranges) scales[name] = std::max(amax, 1e-6f) / 127;

  std::filesystem::create_directories(out);
  for (int config = 1; config <= 3; ++config) {
    BuildOptions o;
    o.target = EngineTarget::kCuda;
    o.max_batch = options.max_batch;
    o.reuse_memory = options.reuse_memory;
    o.scales = scales;
    o.input_format = IoFormat::kInt8Hwc4;
    o.output_format = config == 1 ? IoFormat::kInt8Chw32 : IoFormat::kFp16Chw16;
    if (config >= 2)
      o.fp16_layers = {"/model.24/m.0/Conv", "/model.24/m.1/Conv", "/model.24/m.2/Conv"};
    if (config == 3)
      for (const char* n :
           {"/model.23/cv3/conv/Conv", "/model.23/cv3/act/Sigmoid", "/model.23/cv3/act/Mul"})
        o.fp16_layers.insert(n);
    o.source = std::filesystem::path(model).filename().string();
    QYOLO_ASSIGN_OR_RETURN(BuildResult built, build_engine(graph, o));
    const auto path = out / (options.name + "_config" + std::to_string(config) + ".engine");
    QYOLO_RETURN_IF_ERROR(save_engine(built.engine, path.string()));
    std::printf("wrote %s (%zu layers)\n", path.c_str(), built.engine.layers.size());
  }
  if (!options.images) return Status::ok();
  std::ofstream images(out / "images.f32", std::ios::binary);
  for (const char* name : {"000000000139.jpg", "000000000802.jpg"}) {
    QYOLO_ASSIGN_OR_RETURN(Tensor x, load_image(data / "coco/val2017-mini/images" / name));
    images.write(reinterpret_cast<const char*>(x.data<float>()), x.numel() * 4);
  }
  if (!images) return io_error("cannot write ", (out / "images.f32").string());
  std::printf("wrote %s\n", (out / "images.f32").c_str());
  return Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  bool if_gpu = false;
  std::string folder;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--if-gpu") {
      if_gpu = true;
    } else if (arg == "--onnx" && has_value) {
      options.onnx = argv[++i];
    } else if (arg == "--name" && has_value) {
      options.name = argv[++i];
    } else if (arg == "--max-batch" && has_value) {
      options.max_batch = std::atoi(argv[++i]);
    } else if (arg == "--reuse") {
      options.reuse_memory = true;
    } else if (arg == "--no-images") {
      options.images = false;
    } else if (folder.empty() && arg[0] != '-') {
      folder = arg;
    } else {
      folder.clear();
      break;
    }
  }
  if (folder.empty() || options.max_batch < 1) {
    std::fprintf(stderr,
                 "usage: make_engine_fixtures <folder> [--if-gpu] [--onnx model.onnx] "
                 "[--name yolov5n] [--max-batch 2] [--reuse] [--no-images]\n");
    return 2;
  }
  if (if_gpu && qyolo::cuda::device_count() == 0) {
    std::printf("no CUDA GPU: no engine fixtures written\n");
    return 0;
  }
  const qyolo::Status status = run(folder, options);
  if (!status.is_ok()) {
    std::fprintf(stderr, "make_engine_fixtures: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}
