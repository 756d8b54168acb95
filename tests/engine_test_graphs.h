// Small graphs for the engine builder, file and runtime tests: YOLOv5's patterns (Conv+SiLU,
// a bottleneck's residual Add, Concat, SPPF's MaxPool, nearest Resize, a Conv+Sigmoid head) on
// a 32x32 input, with random weights and deterministic scales.
#pragma once

#include <cmath>
#include <map>
#include <random>
#include <string>

#include "qyolo/engine_builder.h"
#include "qyolo/graph.h"
#include "qyolo/int8.h"
#include "qyolo/runtime.h"

namespace qyolo::testing {

class GraphMaker {
 public:
  explicit GraphMaker(int channels = 3, int size = 32) {
    ValueInfo in;
    in.name = "images";
    in.dtype = DType::kFloat32;
    in.has_shape = true;
    in.shape = {1, channels, size, size};
    in.dim_params.assign(4, "");
    graph.inputs.push_back(in);
    channels_["images"] = channels;
  }
  std::string conv(const std::string& x, int out, int k, int stride, bool silu,
                   const std::string& name) {
    const int in = channels_.at(x);
    Tensor w(DType::kFloat32, {out, in, k, k}), b(DType::kFloat32, {out});
    std::uniform_real_distribution<float> d(-0.5f, 0.5f);
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = d(rng_) / std::sqrt(float(in * k));
    for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = d(rng_) * 0.2f;
    graph.initializers[name + ".w"] = w;
    graph.initializers[name + ".b"] = b;
    Node n = node("Conv", name + "/Conv", {x, name + ".w", name + ".b"}, name + "/conv_out");
    n.attributes["kernel_shape"] = Attribute::of_ints({k, k});
    n.attributes["strides"] = Attribute::of_ints({stride, stride});
    n.attributes["pads"] = Attribute::of_ints({k / 2, k / 2, k / 2, k / 2});
    graph.nodes.push_back(n);
    std::string y = name + "/conv_out";
    channels_[y] = out;
    if (silu) {
      graph.nodes.push_back(node("Sigmoid", name + "/Sigmoid", {y}, name + "/sig_out"));
      graph.nodes.push_back(node("Mul", name + "/Mul", {y, name + "/sig_out"}, name + "/out"));
      channels_[name + "/out"] = out;
      return name + "/out";
    }
    return y;
  }
  std::string op(const std::string& type, std::vector<std::string> in, const std::string& name,
                 int channels) {
    graph.nodes.push_back(node(type, name, std::move(in), name + "_out"));
    channels_[name + "_out"] = channels;
    return name + "_out";
  }
  std::string maxpool(const std::string& x, const std::string& name) {
    Node n = node("MaxPool", name, {x}, name + "_out");
    n.attributes["kernel_shape"] = Attribute::of_ints({5, 5});
    n.attributes["strides"] = Attribute::of_ints({1, 1});
    n.attributes["pads"] = Attribute::of_ints({2, 2, 2, 2});
    graph.nodes.push_back(n);
    channels_[name + "_out"] = channels_.at(x);
    return name + "_out";
  }
  std::string resize(const std::string& x, const std::string& name) {
    graph.initializers[name + ".scales"] = Tensor::from_vector<float>({1, 1, 2, 2});
    Node n = node("Resize", name, {x, "", name + ".scales"}, name + "_out");
    n.attributes["mode"] = Attribute::of_string("nearest");
    n.attributes["coordinate_transformation_mode"] = Attribute::of_string("asymmetric");
    n.attributes["nearest_mode"] = Attribute::of_string("floor");
    graph.nodes.push_back(n);
    channels_[name + "_out"] = channels_.at(x);
    return name + "_out";
  }
  void output(const std::string& v) {
    ValueInfo o;
    o.name = v;
    o.dtype = DType::kFloat32;
    graph.outputs.push_back(o);
  }
  // A scale for every value: amax from a deterministic hash, so tests can make two equal.
  std::map<std::string, float> scales() const {
    std::map<std::string, float> s;
    s["images"] = 1.0f / 127;
    for (const Node& n : graph.nodes) {
      const size_t h = std::hash<std::string>()(n.outputs[0]);
      s[n.outputs[0]] = (0.5f + float(h % 1000) / 250.0f) / 127;
    }
    return s;
  }
  Graph graph;

 private:
  static Node node(const std::string& type, const std::string& name, std::vector<std::string> in,
                   const std::string& out) {
    Node n;
    n.name = name;
    n.op_type = type;
    n.inputs = std::move(in);
    n.outputs = {out};
    return n;
  }
  std::map<std::string, int> channels_;
  std::mt19937 rng_{7};
};

// stem conv -> bottleneck with shortcut -> C3-like concat -> SPPF-like maxpools -> upsample ->
// concat -> head conv (+ a Conv+Sigmoid head when `sigmoid_head`).
inline GraphMaker yolo_like(bool sigmoid_head = false) {
  GraphMaker m;
  const std::string a = m.conv("images", 16, 3, 2, true, "stem");  // 16x16x16
  const std::string b = m.conv(a, 16, 1, 1, true, "m.cv1");
  const std::string c = m.conv(b, 16, 3, 1, true, "m.cv2");
  const std::string add = m.op("Add", {a, c}, "m.add", 16);
  const std::string d = m.conv(a, 16, 1, 1, true, "cv2");
  const std::string cat = m.op("Concat", {add, d}, "cat1", 32);
  const std::string e = m.conv(cat, 32, 3, 2, true, "down");  // 8x8x32
  const std::string p1 = m.maxpool(e, "pool1");
  const std::string p2 = m.maxpool(p1, "pool2");
  const std::string sppf = m.op("Concat", {e, p1, p2}, "cat2", 96);
  const std::string f = m.conv(sppf, 16, 1, 1, true, "sppf.cv2");
  const std::string up = m.resize(f, "up");  // 16x16x16
  const std::string cat3 = m.op("Concat", {up, a}, "cat3", 32);
  const std::string g = m.conv(cat3, 32, 3, 1, true, "neck");
  m.output(m.conv(g, 24, 1, 1, false, "head"));
  if (sigmoid_head) {  // a Conv+Sigmoid inside the network (a tail one is the host's decode)
    const std::string obj = m.op("Sigmoid", {m.conv(e, 8, 1, 1, false, "obj")}, "obj/Sigmoid", 8);
    m.output(m.conv(obj, 8, 1, 1, false, "obj2"));
  }
  for (Node& n : m.graph.nodes)
    if (n.op_type == "Concat") n.attributes["axis"] = Attribute::of_int(1);
  return m;
}

inline Tensor random_image(int channels = 3, int size = 32, uint32_t seed = 3) {
  Tensor t(DType::kFloat32, {1, channels, size, size});
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 255);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(d(rng)) / 255.0f;
  return t;
}

// Runs an engine once on the cpu target with float NCHW inputs; outputs float NCHW by name.
inline Expected<std::map<std::string, Tensor>> run_cpu_engine(const Engine& engine,
                                                              const Tensor& image) {
  QYOLO_ASSIGN_OR_RETURN(auto device, runtime::Device::create(EngineTarget::kCpu));
  QYOLO_ASSIGN_OR_RETURN(auto module, runtime::Module::from_engine(*device, engine));
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> memory;
  runtime::Task task;
  task.module = module.get();
  task.batch = 1;
  for (const auto* list : {&module->inputs(), &module->outputs()})
    for (const EngineIo& io : *list) {
      buffers.emplace_back(size_t(io.image_bytes()));
      if (list == &module->inputs())
        runtime::pack_input(io, 1, image.data<float>(), buffers.back().data());
      QYOLO_ASSIGN_OR_RETURN(auto m,
                             device->register_memory(buffers.back().data(), buffers.back().size()));
      (list == &module->inputs() ? task.inputs : task.outputs).push_back(m.get());
      memory.push_back(std::move(m));
    }
  QYOLO_RETURN_IF_ERROR(device->run(task));
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < module->outputs().size(); ++i) {
    const EngineIo& io = module->outputs()[i];
    Tensor t(DType::kFloat32, {1, io.channels, io.height, io.width});
    runtime::unpack_output(io, 1, buffers[module->inputs().size() + i].data(), t.data<float>());
    out[io.name] = std::move(t);
  }
  return out;
}

}  // namespace qyolo::testing
