// qyolo INT8 convolutions vs cuDNN FP16 (NHWC, tensor ops, the fastest algorithm
// cudnnFindConvolutionForwardAlgorithmEx finds) on every convolution of a YOLOv5 model, side by
// side in one run. Both are timed the same way: a CUDA graph of back-to-back launches on one
// stream (so host launch overhead is out of the numbers), CUDA events around each replay, the
// median of several replays. Writes a markdown table (per layer and the network sum) and a CSV
// with every tile variant's time.
//
//   bench_cuda_conv --shapes yolov5_conv_shapes_640.json [--model yolov5s] [--batches 1,32,64]
//                   [--all-tiles] [--markdown out.md] [--csv out.csv]
//                   [--layers 0,3,57] [--tile NAME] [--no-cudnn]     (for profiling one kernel)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "conv_shapes_json.h"
#include "qyolo/conv_int8.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_conv.h"

namespace {

using qyolo::ChannelSlice;
using qyolo::ConvInt8Shape;
using qyolo::ConvOutput;
using qyolo::Expected;
using qyolo::Status;
using qyolo::cuda::DeviceBuffer;

#define RETURN_IF_CUDNN(expr)                                                                     \
  do {                                                                                            \
    cudnnStatus_t s_ = (expr);                                                                    \
    if (s_ != CUDNN_STATUS_SUCCESS)                                                               \
      return qyolo::internal_error(#expr, ": ", cudnnGetErrorString(s_));                         \
  } while (0)

// Deterministic pseudo-random bytes: int8 in [-128, 127], or halves in [-1, 1).
__global__ void fill_random(uint8_t* data, size_t bytes, uint32_t seed, bool as_half) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < bytes;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i / (as_half ? 2 : 1)) * 2654435761u ^ seed;
    x ^= x >> 15, x *= 2246822519u, x ^= x >> 13, x *= 3266489917u, x ^= x >> 16;
    if (as_half) {
      const __half h = __float2half(float(x & 0xffff) / 32768.0f - 1.0f);
      data[i] = reinterpret_cast<const uint8_t*>(&h)[i % 2];
    } else {
      data[i] = uint8_t(x);
    }
  }
}

Expected<DeviceBuffer> random_buffer(size_t bytes, uint32_t seed, bool as_half = false) {
  auto buffer = DeviceBuffer::allocate(std::max<size_t>(bytes, 16));
  if (!buffer) return buffer.status();
  fill_random<<<1024, 256>>>(buffer->as<uint8_t>(), bytes, seed, as_half);
  QYOLO_RETURN_IF_ERROR(qyolo::cuda::check(cudaDeviceSynchronize(), "fill_random"));
  return buffer;
}

// Median milliseconds of one call of `launch`, from graph replays of `reps` calls.
Expected<double> time_ms(cudaStream_t stream, const std::function<Status()>& launch) {
  using qyolo::cuda::check;
  using qyolo::cuda::Event;
  QYOLO_RETURN_IF_ERROR(launch());  // warm-up: module load, attribute setup, autotuning
  QYOLO_ASSIGN_OR_RETURN(Event start, Event::create());
  QYOLO_ASSIGN_OR_RETURN(Event end, Event::create());
  QYOLO_RETURN_IF_ERROR(start.record(stream));
  QYOLO_RETURN_IF_ERROR(launch());
  QYOLO_RETURN_IF_ERROR(end.record(stream));
  QYOLO_RETURN_IF_ERROR(end.synchronize());
  QYOLO_ASSIGN_OR_RETURN(float once, Event::elapsed_ms(start, end));
  const int reps = std::clamp(int(2.0 / std::max(once, 1e-3f)), 3, 200);

  // A graph of `reps` launches; where capture fails (a library that refuses it), a plain loop.
  struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ~Graph() {
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
    }
  } graph;
  auto capture = [&]() -> Status {
    QYOLO_RETURN_IF_ERROR(check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed),
                                "cudaStreamBeginCapture"));
    for (int i = 0; i < reps; ++i) {
      const Status launched = launch();
      if (!launched.is_ok()) {
        cudaStreamEndCapture(stream, &graph.graph);
        cudaGetLastError();
        return launched;
      }
    }
    QYOLO_RETURN_IF_ERROR(check(cudaStreamEndCapture(stream, &graph.graph), "cudaStreamEndCapture"));
    return check(cudaGraphInstantiate(&graph.exec, graph.graph, 0), "cudaGraphInstantiate");
  };
  const Status captured = capture();
  const bool use_graph = captured.is_ok();
  if (!use_graph) std::fprintf(stderr, "  (timed without a graph: %s)\n", captured.message().c_str());
  auto replay = [&]() -> Status {
    if (use_graph) return check(cudaGraphLaunch(graph.exec, stream), "cudaGraphLaunch");
    for (int r = 0; r < reps; ++r) QYOLO_RETURN_IF_ERROR(launch());
    return Status::ok();
  };
  std::vector<double> samples;
  for (int i = 0; i < 9; ++i) {
    QYOLO_RETURN_IF_ERROR(start.record(stream));
    QYOLO_RETURN_IF_ERROR(replay());
    QYOLO_RETURN_IF_ERROR(end.record(stream));
    QYOLO_RETURN_IF_ERROR(end.synchronize());
    QYOLO_ASSIGN_OR_RETURN(float ms, Event::elapsed_ms(start, end));
    if (i > 0) samples.push_back(double(ms) / reps);  // the first replay uploads the graph
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

struct QyoloResult {
  double ms = 0, heuristic_ms = 0, best_ms = 0;  // autotuned tile, heuristic's, best of all
  std::string tile, heuristic_tile, best_tile;
  std::vector<std::pair<std::string, double>> all;  // every supported tile, with --all-tiles
};

// The epilogue a real engine would run for this layer: SiLU into int8 everywhere, plus the
// residual add in the backbone's Bottlenecks (model.2/4/6/8, shortcut=True), the SiLU's output
// rounded at its own scale before the add as the engine's fused layer does; the three detect
// head convolutions write float16 without activation into 256-channel rows.
Expected<QyoloResult> bench_qyolo(const std::string& node, const ConvInt8Shape& s,
                                  cudaStream_t stream, bool all_tiles, const std::string& force_tile) {
  const bool head = node.find("/model.24/") != std::string::npos;
  const bool residual = node.find("/m/m.") != std::string::npos && node.find("/cv2/") != std::string::npos &&
                        (node.rfind("/model.2/", 0) == 0 || node.rfind("/model.4/", 0) == 0 ||
                         node.rfind("/model.6/", 0) == 0 || node.rfind("/model.8/", 0) == 0);
  // The stem reads the int8:hwc4 input (space-to-depth kernels); the rest NHWC, channels to 16.
  const bool hwc4 = s.in_channels <= 4;
  const ChannelSlice in_layout{hwc4 ? 4 : qyolo::round_up(s.in_channels, 16), 0};
  const ChannelSlice out_layout{head ? 256 : qyolo::round_up(s.out_channels, 16), 0};
  const auto format = qyolo::conv_int8_weight_format(s, in_layout);
  const size_t in_bytes = size_t(s.batch) * s.in_h * s.in_w * in_layout.stride;
  const size_t out_bytes = size_t(s.out_pixels()) * out_layout.stride * (head ? 2 : 1);

  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer input, random_buffer(in_bytes, 1));
  // Random int8 weights straight into the packed layout: the padding lanes are not zero, which
  // changes no timing.
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer weights,
                         random_buffer(size_t(s.out_channels) * qyolo::conv_int8_packed_k(s, format), 2));
  std::vector<float> scales(s.out_channels, 1e-4f), bias(s.out_channels, 0.1f);
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer d_scales, DeviceBuffer::allocate(scales.size() * 4));
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer d_bias, DeviceBuffer::allocate(bias.size() * 4));
  QYOLO_RETURN_IF_ERROR(d_scales.upload(scales.data(), scales.size() * 4));
  QYOLO_RETURN_IF_ERROR(d_bias.upload(bias.data(), bias.size() * 4));
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer res, random_buffer(residual ? out_bytes : 16, 3));
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer output, DeviceBuffer::allocate(out_bytes));

  qyolo::cuda::ConvInt8Args args;
  args.shape = s;
  args.input = input.as<int8_t>();
  args.input_layout = in_layout;
  args.weights = weights.as<int8_t>();
  args.epilogue.input_scale = 0.02f;
  args.epilogue.weight_scales = d_scales.as<float>();
  args.epilogue.bias = d_bias.as<float>();
  args.epilogue.silu = !head;
  args.epilogue.residual = residual ? res.as<int8_t>() : nullptr;
  args.epilogue.residual_layout = out_layout;
  args.epilogue.residual_scale = 0.03f;
  // As the engine builds a fused Conv+SiLU+Add: the SiLU output rounded at its own scale first.
  args.epilogue.conv_scale = residual ? 0.04f : 0.0f;
  args.epilogue.output_scale = 0.05f;
  args.epilogue.output = head ? ConvOutput::kFloat16 : ConvOutput::kInt8;
  args.output = output.data();
  args.output_layout = out_layout;
  // Split K's workspace, as an engine has one (QYOLO_CUDA_SPLIT_K=0: no splits, for comparison).
  QYOLO_ASSIGN_OR_RETURN(DeviceBuffer workspace,
                         DeviceBuffer::allocate(qyolo::cuda::conv_int8_split_workspace_bytes()));
  QYOLO_RETURN_IF_ERROR(workspace.fill(0));
  args.workspace = workspace.data();
  args.workspace_bytes = workspace.size();
  auto tile_label = [&](int tile) {
    const int split = qyolo::cuda::conv_int8_pick_split(args, tile);
    return std::string(qyolo::cuda::conv_int8_tile_name(tile)) +
           (split > 1 ? "/k" + std::to_string(split) : "");
  };

  QyoloResult r;
  auto run = [&](int tile) -> Expected<double> {
    args.tile = tile;
    return time_ms(stream, [&] { return qyolo::cuda::conv_int8(args, stream); });
  };
  const int picked = qyolo::cuda::conv_int8_pick_tile(args);
  int tuned = -1;
  for (int t = 0; t < qyolo::cuda::conv_int8_tile_count(); ++t)
    if (force_tile == qyolo::cuda::conv_int8_tile_name(t)) tuned = t;
  if (tuned < 0) {
    QYOLO_ASSIGN_OR_RETURN(tuned, qyolo::cuda::conv_int8_autotune(args, stream, 10));
  }
  r.tile = tile_label(tuned);
  r.heuristic_tile = tile_label(picked);
  QYOLO_ASSIGN_OR_RETURN(r.ms, run(tuned));
  if (picked == tuned) {
    r.heuristic_ms = r.ms;
  } else {
    QYOLO_ASSIGN_OR_RETURN(r.heuristic_ms, run(picked));
  }
  r.best_ms = r.ms, r.best_tile = r.tile;
  if (all_tiles)
    for (int t = 0; t < qyolo::cuda::conv_int8_tile_count(); ++t) {
      if (!qyolo::cuda::conv_int8_tile_supports(t, args)) continue;
      QYOLO_ASSIGN_OR_RETURN(double ms, t == tuned    ? Expected<double>(r.ms)
                                        : t == picked ? Expected<double>(r.heuristic_ms)
                                                      : run(t));
      r.all.emplace_back(qyolo::cuda::conv_int8_tile_name(t), ms);
      if (ms < r.best_ms) r.best_ms = ms, r.best_tile = tile_label(t);
    }
  return r;
}

struct CudnnResult {
  double ms = 0;
  std::string algo;
};

// cuDNN FP16 NHWC with float accumulation and with half accumulation, each with the fastest
// algorithm cudnnFind measures; the faster of the two counts. The stem also tries its input
// padded to 4 and 8 channels (the tensor cores' preferred widths), again keeping the fastest.
Expected<CudnnResult> bench_cudnn(cudnnHandle_t handle, const ConvInt8Shape& shape,
                                  cudaStream_t stream, DeviceBuffer& workspace) {
  CudnnResult best;
  best.ms = 1e30;
  std::vector<int> channel_options = {shape.in_channels};
  if (shape.in_channels % 8 != 0) channel_options.push_back(qyolo::round_up(shape.in_channels, 8));
  if (shape.in_channels < 4) channel_options.push_back(4);
  for (const int cin : channel_options) {
    ConvInt8Shape s = shape;
    s.in_channels = cin;
    QYOLO_ASSIGN_OR_RETURN(DeviceBuffer x, random_buffer(size_t(s.batch) * s.in_h * s.in_w * cin * 2, 4, true));
    QYOLO_ASSIGN_OR_RETURN(DeviceBuffer w, random_buffer(size_t(s.out_channels) * s.kernel * s.kernel * cin * 2, 5, true));
    QYOLO_ASSIGN_OR_RETURN(DeviceBuffer y, DeviceBuffer::allocate(size_t(s.out_pixels()) * s.out_channels * 2));
    for (const cudnnDataType_t compute : {CUDNN_DATA_FLOAT, CUDNN_DATA_HALF}) {
      cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
      cudnnFilterDescriptor_t wd = nullptr;
      cudnnConvolutionDescriptor_t cd = nullptr;
      auto cleanup = [&] {
        if (xd) cudnnDestroyTensorDescriptor(xd);
        if (yd) cudnnDestroyTensorDescriptor(yd);
        if (wd) cudnnDestroyFilterDescriptor(wd);
        if (cd) cudnnDestroyConvolutionDescriptor(cd);
      };
      auto measure = [&]() -> Expected<CudnnResult> {
        RETURN_IF_CUDNN(cudnnCreateTensorDescriptor(&xd));
        RETURN_IF_CUDNN(cudnnCreateTensorDescriptor(&yd));
        RETURN_IF_CUDNN(cudnnCreateFilterDescriptor(&wd));
        RETURN_IF_CUDNN(cudnnCreateConvolutionDescriptor(&cd));
        RETURN_IF_CUDNN(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_HALF, s.batch,
                                                   cin, s.in_h, s.in_w));
        RETURN_IF_CUDNN(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_HALF, s.batch,
                                                   s.out_channels, s.out_h(), s.out_w()));
        RETURN_IF_CUDNN(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_HALF, CUDNN_TENSOR_NHWC,
                                                   s.out_channels, cin, s.kernel, s.kernel));
        RETURN_IF_CUDNN(cudnnSetConvolution2dDescriptor(cd, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                                        CUDNN_CROSS_CORRELATION, compute));
        RETURN_IF_CUDNN(cudnnSetConvolutionMathType(cd, CUDNN_TENSOR_OP_MATH));
        int max_algos = 0;
        RETURN_IF_CUDNN(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_algos));
        std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max_algos, 1));
        int returned = 0;
        RETURN_IF_CUDNN(cudnnFindConvolutionForwardAlgorithmEx(
            handle, xd, x.data(), wd, w.data(), cd, yd, y.data(), int(perf.size()), &returned,
            perf.data(), workspace.data(), workspace.size()));
        const cudnnConvolutionFwdAlgoPerf_t* chosen = nullptr;
        for (int i = 0; i < returned && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= workspace.size())
            chosen = &perf[i];
        if (!chosen) return qyolo::unsupported("cudnnFind: no algorithm ran");
        RETURN_IF_CUDNN(cudnnSetConvolutionMathType(cd, chosen->mathType));
        const float alpha = 1.0f, beta = 0.0f;
        const cudnnConvolutionFwdAlgo_t algo = chosen->algo;
        const size_t ws_bytes = chosen->memory;
        QYOLO_ASSIGN_OR_RETURN(double ms, time_ms(stream, [&]() -> Status {
          RETURN_IF_CUDNN(cudnnConvolutionForward(handle, &alpha, xd, x.data(), wd, w.data(), cd,
                                                  algo, workspace.data(), ws_bytes, &beta, yd,
                                                  y.data()));
          return Status::ok();
        }));
        CudnnResult r;
        r.ms = ms;
        r.algo = qyolo::str_cat("algo", int(algo), compute == CUDNN_DATA_HALF ? "/h" : "/f",
                                chosen->mathType == CUDNN_TENSOR_OP_MATH ? "/tc" : "",
                                cin != shape.in_channels ? qyolo::str_cat("/c", cin) : "");
        return r;
      };
      auto r = measure();
      cleanup();
      if (r && r->ms < best.ms) best = *r;
    }
  }
  if (best.ms >= 1e30) return qyolo::unsupported("cuDNN ran no configuration");
  return best;
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

int run(int argc, char** argv) {
  std::string shapes_path, model = "yolov5s", markdown_path, csv_path;
  std::vector<int> batches = {1, 32, 64};
  bool all_tiles = false, cudnn = true;
  std::vector<int> layers;
  std::string force_tile;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--shapes") shapes_path = next();
    else if (a == "--model") model = next();
    else if (a == "--batches") batches = parse_list(next());
    else if (a == "--all-tiles") all_tiles = true;
    else if (a == "--markdown") markdown_path = next();
    else if (a == "--csv") csv_path = next();
    else if (a == "--layers") layers = parse_list(next());
    else if (a == "--tile") force_tile = next();
    else if (a == "--no-cudnn") cudnn = false;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  auto convs = qyolo::testing::read_conv_shapes(shapes_path, model);
  if (!convs) {
    std::fprintf(stderr, "%s\n", convs.status().message().c_str());
    return 1;
  }
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  };
  auto device = qyolo::cuda::describe_device(0);
  if (!device) return fail(device.status());
  auto stream = qyolo::cuda::Stream::create();
  if (!stream) return fail(stream.status());
  cudnnHandle_t handle = nullptr;
  if (cudnnCreate(&handle) != CUDNN_STATUS_SUCCESS) return fail(qyolo::internal_error("cudnnCreate failed"));
  cudnnSetStream(handle, stream->get());
  auto workspace = DeviceBuffer::allocate(size_t(1) << 30);
  if (!workspace) return fail(workspace.status());

  std::ostringstream md, csv;
  md << "Device: " << *device << "; cuDNN " << cudnnGetVersion() << "\n\n";
  csv << "batch,index,node,cin,hin,cout,k,stride,qyolo_ms,qyolo_tile,heuristic_ms,heuristic_tile,"
         "best_ms,best_tile,cudnn_ms,cudnn_algo";
  if (all_tiles)
    for (int t = 0; t < qyolo::cuda::conv_int8_tile_count(); ++t)
      csv << "," << qyolo::cuda::conv_int8_tile_name(t);
  csv << "\n";
  std::ostringstream summary;
  for (const int batch : batches) {
    md << "### batch " << batch << "\n\n"
       << "| # | layer | cin→cout | k/s | out | qyolo INT8 µs | tile (autotuned) | TOPS | cuDNN FP16 µs | algo | TFLOPS | speedup |\n"
       << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    double sum_q = 0, sum_heuristic = 0, sum_c = 0, macs_total = 0, min_ratio = 1e9;
    int slower = 0;
    for (size_t i = 0; i < convs->size(); ++i) {
      if (!layers.empty() && std::find(layers.begin(), layers.end(), int(i)) == layers.end()) continue;
      const auto& entry = (*convs)[i];
      ConvInt8Shape s = entry.shape;
      s.batch = batch;
      auto q = bench_qyolo(entry.onnx_node, s, stream->get(), all_tiles, force_tile);
      if (!q) return fail(qyolo::with_context(q.status(), entry.onnx_node));
      Expected<CudnnResult> c = cudnn ? bench_cudnn(handle, s, stream->get(), *workspace)
                                      : Expected<CudnnResult>(CudnnResult{q->ms, "skipped"});
      if (!c) return fail(qyolo::with_context(c.status(), entry.onnx_node));
      const double ops = 2.0 * double(s.macs());
      const double ratio = c->ms / q->ms;
      sum_q += q->ms, sum_heuristic += q->heuristic_ms, sum_c += c->ms, macs_total += ops;
      min_ratio = std::min(min_ratio, ratio);
      slower += ratio < 1.0;
      char row[512];
      std::snprintf(row, sizeof row,
                    "| %zu | %s | %d→%d | %d/%d | %dx%d | %.1f | %s | %.0f | %.1f | %s | %.0f | %.2f× |\n",
                    i, entry.onnx_node.c_str(), s.in_channels, s.out_channels, s.kernel, s.stride,
                    s.out_h(), s.out_w(), q->ms * 1e3, q->tile.c_str(), ops / q->ms * 1e-9,
                    c->ms * 1e3, c->algo.c_str(), ops / c->ms * 1e-9, ratio);
      md << row;
      csv << batch << "," << i << "," << entry.onnx_node << "," << s.in_channels << "," << s.in_h
          << "," << s.out_channels << "," << s.kernel << "," << s.stride << "," << q->ms << ","
          << q->tile << "," << q->heuristic_ms << "," << q->heuristic_tile << "," << q->best_ms << "," << q->best_tile << "," << c->ms << "," << c->algo;
      if (all_tiles) {
        for (int t = 0; t < qyolo::cuda::conv_int8_tile_count(); ++t) {
          csv << ",";
          for (const auto& [name, ms] : q->all)
            if (name == qyolo::cuda::conv_int8_tile_name(t)) csv << ms;
        }
      }
      csv << "\n";
      std::fprintf(stderr,
                   "b%d %2zu %-34s qyolo %8.1f us (%s; heuristic %8.1f %s)  cudnn %8.1f us (%s)  %.2fx\n",
                   batch, i, entry.onnx_node.c_str(), q->ms * 1e3, q->tile.c_str(),
                   q->heuristic_ms * 1e3, q->heuristic_tile.c_str(), c->ms * 1e3, c->algo.c_str(),
                   ratio);
    }
    char row[512];
    std::snprintf(row, sizeof row,
                  "| | **sum of %zu** | | | | **%.1f** | | %.0f | **%.1f** | | %.0f | **%.2f×** |\n\n",
                  convs->size(), sum_q * 1e3, macs_total / sum_q * 1e-9, sum_c * 1e3,
                  macs_total / sum_c * 1e-9, sum_c / sum_q);
    md << row;
    char line[400];
    std::snprintf(line, sizeof line,
                  "batch %2d: qyolo %9.1f us (heuristic tiles %9.1f), cuDNN FP16 %9.1f us, sum "
                  "speedup %.2fx, slowest layer %.2fx, %d layers slower\n",
                  batch, sum_q * 1e3, sum_heuristic * 1e3, sum_c * 1e3, sum_c / sum_q, min_ratio,
                  slower);
    summary << line;
    md << "Network sum: " << line << "\n";
  }
  cudnnDestroy(handle);
  if (!markdown_path.empty()) std::ofstream(markdown_path) << md.str();
  if (!csv_path.empty()) std::ofstream(csv_path) << csv.str();
  std::printf("%s\n%s", device->c_str(), summary.str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
