// Writes the real-data fixtures of the GPU pre/post-processing tests: the first `count`
// val2017-mini images as H x W x 3 uint8 .npy, and the three raw head outputs of yolov5n
// (cut at its head convolutions, FP32 CPU executor, 640 letterbox) as 1 x 255 x H x W float16
// .npy. The GPU machine lacks ONNX and image libraries, so the tests read these files.
//   make_cuda_ops_fixtures <data dir> <output dir> [count [--if-gpu]]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "qyolo/cuda.h"
#include "qyolo/executor.h"
#include "qyolo/npy.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"

namespace qyolo {
namespace {

Status run(const std::filesystem::path& data, const std::filesystem::path& out, int count) {
  QYOLO_ASSIGN_OR_RETURN(Graph full, load_onnx((data / "models/yolov5n.onnx").string()));
  QYOLO_ASSIGN_OR_RETURN(const Graph model, trim_at_heads(full));
  if (model.outputs.size() != 3) return invalid_argument("yolov5n: expected 3 head convolutions");
  ExecutorOptions options;
  options.input_shapes[model.inputs[0].name] = {1, 3, 640, 640};
  QYOLO_ASSIGN_OR_RETURN(auto executor, CpuExecutor::create(model, options));
  std::vector<std::filesystem::path> images;
  for (const auto& e : std::filesystem::directory_iterator(data / "coco/val2017-mini/images"))
    if (e.path().extension() == ".jpg") images.push_back(e.path());
  std::sort(images.begin(), images.end());
  if (static_cast<int>(images.size()) < count)
    return not_found(data / "coco/val2017-mini/images", " has fewer than ", count, " images");
  std::filesystem::create_directories(out);
  for (int i = 0; i < count; ++i) {
    QYOLO_ASSIGN_OR_RETURN(Image image, read_image(images[i].string()));
    Tensor rgb(DType::kUInt8, {image.height, image.width, 3});
    std::copy(image.pixels.begin(), image.pixels.end(), rgb.data<uint8_t>());
    QYOLO_RETURN_IF_ERROR(write_npy(rgb, (out / ("image_" + std::to_string(i) + ".npy")).string()));
    const Image boxed = letterbox(image, 640, 640, nullptr);
    Tensor input(DType::kFloat32, {1, 3, 640, 640});
    image_to_tensor(boxed, input, 0);
    std::map<std::string, Tensor> inputs;
    inputs.emplace(model.inputs[0].name, std::move(input));
    QYOLO_ASSIGN_OR_RETURN(auto outputs, executor->run(inputs));
    for (const auto& [name, head] : outputs) {
      Tensor half(DType::kFloat16, head.shape());
      for (int64_t k = 0; k < head.numel(); ++k)
        half.data<uint16_t>()[k] = float_to_half(head.data<float>()[k]);
      const std::string level = std::to_string(head.shape()[2]);  // 80, 40, 20
      QYOLO_RETURN_IF_ERROR(
          write_npy(half, (out / ("heads_" + std::to_string(i) + "_" + level + ".npy")).string()));
    }
    std::printf("%s -> image_%d (%dx%d)\n", images[i].filename().c_str(), i, image.width,
                image.height);
  }
  return Status::ok();
}

}  // namespace
}  // namespace qyolo

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: make_cuda_ops_fixtures <data dir> <output dir> [count [--if-gpu]]\n");
    return 2;
  }
  const int count = argc > 3 ? std::atoi(argv[3]) : 4;
  // ctest passes --if-gpu: on a machine without a GPU the tests that read the fixtures skip.
  if (argc > 4 && std::string(argv[4]) == "--if-gpu" && qyolo::cuda::device_count() == 0) {
    std::printf("no CUDA device: the GPU tests skip, no fixtures written\n");
    return 0;
  }
  const qyolo::Status status = qyolo::run(argv[1], argv[2], count);
  if (!status.is_ok()) {
    std::fprintf(stderr, "make_cuda_ops_fixtures: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}
