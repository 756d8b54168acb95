// qyolo bench --loadEngine <file>: trtexec's inference report for an engine on its target —
// throughput, latency min/mean/median/percentiles and coefficient of variation, split into
// H2D / compute / D2H, and a per-layer profile (table, JSON, SVG bar chart of the slowest).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <memory>
#include <numeric>
#include <thread>

#include "qyolo/commands.h"
#include "qyolo/runtime.h"

#if defined(QYOLO_WITH_CUDA)
#include <cuda_runtime_api.h>

#include "qyolo/cuda.h"
#endif

namespace qyolo::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::string engine;
  int batch = 0;
  double warm_up_ms = 200;
  double duration_s = 3;
  int iterations = 10;
  int streams = 1;
  bool cuda_graph = false;
  std::string export_times, export_profile;
  bool dump_profile = false;
  std::string devices;  // --devices all|0,1,...: one set of instances per entry
};

struct Stats {
  double min = 0, max = 0, mean = 0, median = 0, p90 = 0, p95 = 0, p99 = 0, cv = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    const size_t i = std::min(v.size() - 1, size_t(std::ceil(p / 100.0 * double(v.size()))) - 1);
    return v[i];
  };
  s.min = v.front();
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p90 = pct(90);
  s.p95 = pct(95);
  s.p99 = pct(99);
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.cv = s.mean > 0 ? std::sqrt(var / double(v.size())) / s.mean * 100 : 0;
  return s;
}

void print_stats(const char* what, const Stats& s) {
  std::printf(
      "%s: min = %.5f ms, max = %.5f ms, mean = %.5f ms, median = %.5f ms, percentile(90%%) = "
      "%.5f ms, percentile(95%%) = %.5f ms, percentile(99%%) = %.5f ms\n",
      what, s.min, s.max, s.mean, s.median, s.p90, s.p95, s.p99);
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

struct LayerRow {
  std::string name, op, precision, format;
  double average_ms = 0, median_ms = 0, total_ms = 0, share = 0;
};

// The slowest layers as horizontal bars, longest first.
std::string profile_svg(std::vector<LayerRow> rows, const std::string& title) {
  std::sort(rows.begin(), rows.end(),
            [](const LayerRow& a, const LayerRow& b) { return a.average_ms > b.average_ms; });
  if (rows.size() > 20) rows.resize(20);
  const int bar_h = 22, left = 420, width = 900, top = 40;
  const double longest = rows.empty() ? 1 : std::max(rows[0].average_ms, 1e-9);
  std::string svg = str_cat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", width + 40, "\" height=\"",
      top + bar_h * int(rows.size()) + 20, "\" font-family=\"sans-serif\" font-size=\"12\">\n",
      "<text x=\"10\" y=\"20\" font-size=\"14\">", xml_escape(title), "</text>\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const int y = top + int(i) * bar_h;
    const double w = (width - left - 120) * rows[i].average_ms / longest;
    const char* color = rows[i].precision == "int8" ? "#4c78a8" : "#f58518";
    std::string label =
        rows[i].name.size() > 60 ? rows[i].name.substr(0, 57) + "..." : rows[i].name;
    svg += str_cat("<text x=\"", left - 6, "\" y=\"", y + 15, "\" text-anchor=\"end\">",
                   xml_escape(label), "</text>\n<rect x=\"", left, "\" y=\"", y + 3, "\" width=\"",
                   w, "\" height=\"", bar_h - 6, "\" fill=\"", color, "\"/>\n<text x=\"",
                   left + w + 6, "\" y=\"", y + 15, "\">", rows[i].average_ms, " ms (",
                   std::lround(rows[i].share * 10) / 10.0, "%, ", rows[i].precision, ")</text>\n");
  }
  return svg + "</svg>\n";
}

std::string layer_format(const Engine& e, const EngineLayer& l) {
  if (l.kind == LayerKind::kInputReformat)
    return io_format_name(e.inputs[l.inputs[0]].format) + " -> nhwc";
  if (l.kind == LayerKind::kOutputReformat)
    return "nhwc -> " + io_format_name(e.outputs[l.output].format);
  const EngineTensor& t = e.tensors[l.output];
  return element_type_name(t.type) + ":nhwc" + std::to_string(t.layout.stride);
}

// Host side of one I/O buffer: plain memory, or on the cuda target page-locked memory
// (cudaMallocHost), as trtexec's, so H2D / D2H run at the bus's speed.
class HostBuffer {
 public:
  static Expected<HostBuffer> make(size_t bytes, bool pinned) {
    HostBuffer b;
    b.size_ = bytes;
#if defined(QYOLO_WITH_CUDA)
    if (pinned) {
      void* p = nullptr;
      QYOLO_RETURN_IF_ERROR(cuda::check(cudaMallocHost(&p, bytes), "bench: cudaMallocHost"));
      std::memset(p, 0, bytes);
      b.pinned_.reset(p);
      return b;
    }
#else
    (void)pinned;
#endif
    b.plain_.assign(bytes, 0);
    return b;
  }
  uint8_t* data() {
    return pinned_ ? static_cast<uint8_t*>(pinned_.get()) : plain_.data();
  }
  size_t size() const { return size_; }

 private:
  struct FreePinned {
    void operator()(void* p) const {
#if defined(QYOLO_WITH_CUDA)
      cudaFreeHost(p);
#else
      (void)p;
#endif
    }
  };
  std::vector<uint8_t> plain_;
  std::unique_ptr<void, FreePinned> pinned_;
  size_t size_ = 0;
};

// The instances of one device: a module per stream, with its I/O buffers. On targets whose
// memory is not the host's (cuda) the tasks use the backend's buffers, and every iteration
// copies the inputs in (H2D) and the outputs out (D2H) from page-locked host buffers, as
// trtexec counts them.
struct Instance {
  int device_index = 0;
  std::unique_ptr<runtime::Device> device;
  std::vector<std::unique_ptr<runtime::Module>> modules;
  std::vector<std::vector<HostBuffer>> buffers;  // [stream][io], host side
  std::vector<std::vector<std::unique_ptr<runtime::BackendBuffer>>> device_buffers;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> registered;
  std::vector<runtime::Task> tasks;
  bool host_memory = true;
  size_t input_count = 0;
  double h2d_ms = 0, d2h_ms = 0;  // of the last iteration
#if defined(QYOLO_WITH_CUDA)
  // --useCudaGraph: each stream's task captured once (hybrid submission) and replayed.
  std::vector<cuda::Stream> streams;
  std::vector<cudaGraphExec_t> graphs;
  ~Instance() {
    for (cudaGraphExec_t g : graphs) cudaGraphExecDestroy(g);
  }
#endif
};

// --useCudaGraph: a stream per task and the task's whole network captured into a CUDA graph on
// it, as trtexec captures its enqueue.
Status capture_graphs(Instance& inst) {
#if defined(QYOLO_WITH_CUDA)
  for (const runtime::Task& task : inst.tasks) {
    QYOLO_ASSIGN_OR_RETURN(cuda::Stream stream, cuda::Stream::create());
    cudaStream_t s = stream.get();
    QYOLO_RETURN_IF_ERROR(cuda::check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
                                      "--useCudaGraph: begin capture"));
    const Status submitted = inst.device->submit(task, s);
    cudaGraph_t graph = nullptr;
    const Status ended = cuda::check(cudaStreamEndCapture(s, &graph), "--useCudaGraph: end capture");
    QYOLO_RETURN_IF_ERROR(submitted);
    QYOLO_RETURN_IF_ERROR(ended);
    cudaGraphExec_t exec = nullptr;
    const Status made =
        cuda::check(cudaGraphInstantiate(&exec, graph, 0), "--useCudaGraph: instantiate");
    cudaGraphDestroy(graph);
    QYOLO_RETURN_IF_ERROR(made);
    inst.graphs.push_back(exec);
    inst.streams.push_back(std::move(stream));
  }
  return Status::ok();
#else
  (void)inst;
  return unsupported("--useCudaGraph: qyolo was built without QYOLO_CUDA");
#endif
}

Expected<std::unique_ptr<Instance>> make_instance(const Engine& engine, const std::string& path,
                                                  int device_index, int streams, int batch) {
  auto inst = std::make_unique<Instance>();
  inst->device_index = device_index;
  runtime::DeviceOptions options;
  options.device_index = device_index;
  options.worker_threads = streams;
  QYOLO_ASSIGN_OR_RETURN(inst->device, runtime::Device::create(engine.target, options));
  inst->host_memory = engine.target == EngineTarget::kCpu;
  inst->input_count = engine.inputs.size();
  inst->buffers.resize(streams);
  inst->device_buffers.resize(streams);
  inst->tasks.resize(streams);
  runtime::Backend& backend = inst->device->backend();
  for (int s = 0; s < streams; ++s) {
    auto module = runtime::Module::from_engine(*inst->device, engine);
    if (!module) return with_context(module.status(), path);
    inst->modules.push_back(std::move(*module));
    runtime::Task& task = inst->tasks[s];
    task.module = inst->modules.back().get();
    task.batch = batch;
    for (const auto* list : {&engine.inputs, &engine.outputs})
      for (const EngineIo& io : *list) {
        QYOLO_ASSIGN_OR_RETURN(HostBuffer host, HostBuffer::make(size_t(io.image_bytes()) * batch,
                                                                 !inst->host_memory));
        inst->buffers[s].push_back(std::move(host));
        void* data = inst->buffers[s].back().data();
        if (!inst->host_memory) {
          QYOLO_ASSIGN_OR_RETURN(auto buffer, backend.allocate(inst->buffers[s].back().size()));
          data = buffer->data();
          inst->device_buffers[s].push_back(std::move(buffer));
        }
        QYOLO_ASSIGN_OR_RETURN(auto memory, inst->device->register_memory(
                                                data, inst->buffers[s].back().size()));
        (list == &engine.inputs ? task.inputs : task.outputs).push_back(memory.get());
        inst->registered.push_back(std::move(memory));
      }
  }
  return inst;
}

// The inputs (in) or outputs copied between the host buffers and the device's; no-ops in
// host memory.
Status copy(Instance& inst, bool in) {
  if (inst.host_memory) return Status::ok();
  runtime::Backend& backend = inst.device->backend();
  for (size_t s = 0; s < inst.tasks.size(); ++s)
    for (size_t i = 0; i < inst.device_buffers[s].size(); ++i) {
      if ((i < inst.input_count) != in) continue;
      void* dev = inst.device_buffers[s][i]->data();
      auto& host = inst.buffers[s][i];
      QYOLO_RETURN_IF_ERROR(in ? backend.upload(dev, host.data(), host.size())
                               : backend.download(host.data(), dev, host.size()));
    }
  return Status::ok();
}

// One iteration: the inputs copied in, every stream runs one task (through fences, so the
// streams overlap; with --useCudaGraph, its graph on its own stream), the outputs copied out.
Status iterate(Instance& inst) {
  const auto t0 = Clock::now();
  QYOLO_RETURN_IF_ERROR(copy(inst, true));
  const auto t1 = Clock::now();
  bool graphs = false;
#if defined(QYOLO_WITH_CUDA)
  if (!inst.graphs.empty()) {  // --useCudaGraph: every stream's graph launched, then waited for
    graphs = true;
    for (size_t k = 0; k < inst.graphs.size(); ++k)
      QYOLO_RETURN_IF_ERROR(cuda::check(cudaGraphLaunch(inst.graphs[k], inst.streams[k].get()),
                                        "--useCudaGraph: graph launch"));
    for (const cuda::Stream& stream : inst.streams) QYOLO_RETURN_IF_ERROR(stream.synchronize());
  }
#endif
  if (!graphs) {
    std::vector<runtime::FencePtr> done;
    for (const runtime::Task& task : inst.tasks) {
      done.push_back(runtime::Fence::create());
      QYOLO_RETURN_IF_ERROR(inst.device->submit(task, {}, {done.back()}));
    }
    for (auto& f : done) QYOLO_RETURN_IF_ERROR(f->wait());
  }
  const auto t2 = Clock::now();
  QYOLO_RETURN_IF_ERROR(copy(inst, false));
  inst.h2d_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  inst.d2h_ms = std::chrono::duration<double, std::milli>(Clock::now() - t2).count();
  return Status::ok();
}

// Every instance at once, each from its own host thread, for the flags' warm-up and duration:
// images per second of each, measured over its own iterations.
Expected<std::vector<double>> run_together(std::vector<std::unique_ptr<Instance>>& instances,
                                           const BenchFlags& flags, int batch) {
  std::vector<double> rates(instances.size(), 0);
  std::vector<Status> errors(instances.size(), Status::ok());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < instances.size(); ++k)
    threads.emplace_back([&, k] {
      Instance& inst = *instances[k];
      const auto warm = Clock::now();
      auto ms_since = [](Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
      };
      do {
        errors[k] = iterate(inst);
        if (!errors[k].is_ok()) return;
      } while (ms_since(warm) < flags.warm_up_ms);
      const auto start = Clock::now();
      int count = 0;
      while (count < flags.iterations || ms_since(start) < flags.duration_s * 1000) {
        errors[k] = iterate(inst);
        if (!errors[k].is_ok()) return;
        ++count;
      }
      rates[k] = double(count) * double(inst.tasks.size()) * batch / (ms_since(start) / 1000);
    });
  for (auto& t : threads) t.join();
  for (const Status& st : errors) QYOLO_RETURN_IF_ERROR(st);
  return rates;
}

int run_bench(const BenchFlags& flags) {
  auto engine = load_engine(flags.engine);
  if (!engine) return report_error("bench", engine.status());
  if (flags.cuda_graph && engine->target != EngineTarget::kCuda)
    return report_error("bench", invalid_argument("--useCudaGraph needs a cuda engine"));
  if (flags.streams < 1 || flags.iterations < 1 || flags.duration_s < 0 || flags.warm_up_ms < 0)
    return report_error("bench", invalid_argument("--streams and --iterations must be positive"));
  const int batch = flags.batch ? flags.batch : engine->max_batch;
  if (batch < 1 || batch > engine->max_batch)
    return report_error("bench", invalid_argument("--batch ", batch, " outside 1..",
                                                  engine->max_batch, " (the engine's --maxBatch)"));
  auto device_indices = parse_devices(flags.devices, engine->target);
  if (!device_indices) return report_error("bench", device_indices.status());
  std::vector<std::unique_ptr<Instance>> instances;
  for (int index : *device_indices) {
    auto inst = make_instance(*engine, flags.engine, index, flags.streams, batch);
    if (!inst) return report_error("bench", inst.status());
    if (flags.cuda_graph)
      if (Status st = capture_graphs(**inst); !st.is_ok()) return report_error("bench", st);
    instances.push_back(std::move(*inst));
  }
  Instance& first = *instances[0];
  runtime::Device& device = *first.device;
  std::printf("=== Model Options ===\nEngine: %s (target %s, built by qyolo %s from %s)\n",
              flags.engine.c_str(), target_name(engine->target).c_str(),
              engine->qyolo_version.c_str(), engine->source.c_str());
  std::printf(
      "=== Inference Options ===\nBatch: %d\nStreams: %d\nWarmup: %.0f ms\nDuration: %.1f s "
      "(+ at least %d iterations)\nCUDA graph: %s\nDevice: %s\n",
      batch, flags.streams, flags.warm_up_ms, flags.duration_s, flags.iterations,
      flags.cuda_graph ? "yes (each stream's task captured once, then replayed)" : "no",
      device.describe().c_str());

  const auto warm_start = Clock::now();
  do {
    Status st = iterate(first);
    if (!st.is_ok()) return report_error("bench", st);
  } while (std::chrono::duration<double, std::milli>(Clock::now() - warm_start).count() <
           flags.warm_up_ms);

  struct Times {
    double start_ms, end_ms, h2d_ms, d2h_ms;
  };
  std::vector<Times> times;
  const auto bench_start = Clock::now();
  auto since = [&](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(t - bench_start).count();
  };
  while (int(times.size()) < flags.iterations || since(Clock::now()) < flags.duration_s * 1000) {
    const auto start = Clock::now();
    Status st = iterate(first);
    if (!st.is_ok()) return report_error("bench", st);
    times.push_back({since(start), since(Clock::now()), first.h2d_ms, first.d2h_ms});
  }
  const double wall_s = since(Clock::now()) / 1000;
  std::vector<double> latency, h2d, compute, d2h;
  for (const Times& t : times) {
    latency.push_back(t.end_ms - t.start_ms);
    h2d.push_back(t.h2d_ms);
    d2h.push_back(t.d2h_ms);
    compute.push_back(t.end_ms - t.start_ms - t.h2d_ms - t.d2h_ms);
  }
  const Stats lat = stats_of(latency);
  const double qps = double(times.size()) * flags.streams / wall_s;
  std::printf("=== Performance summary ===\n");
  std::printf("Throughput: %.3f qps, %.1f img/s (batch %d x %d streams)\n", qps, qps * batch, batch,
              flags.streams);
  print_stats("Latency", lat);
  // Host memory on the cpu target: nothing to transfer, so compute is the whole latency.
  print_stats("H2D Latency", stats_of(h2d));
  print_stats("Compute Time", stats_of(compute));
  print_stats("D2H Latency", stats_of(d2h));
  std::printf("Total Host Walltime: %.5f s\nTotal Compute Time: %.5f s\n", wall_s,
              std::accumulate(compute.begin(), compute.end(), 0.0) / 1000);
  std::printf("Coefficient of variation: %.2f %%\n", lat.cv);
  if (engine->target == EngineTarget::kCpu)
    std::printf("H2D and D2H are zero on the cpu target: its I/O buffers are host memory.\n");

  if (!flags.export_times.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (const Times& t : times)
      j.push_back({{"startComputeMs", t.start_ms},
                   {"endComputeMs", t.end_ms},
                   {"computeMs", t.end_ms - t.start_ms - t.h2d_ms - t.d2h_ms},
                   {"latencyMs", t.end_ms - t.start_ms},
                   {"h2dMs", t.h2d_ms},
                   {"d2hMs", t.d2h_ms}});
    std::ofstream out(flags.export_times);
    out << j.dump(2) << "\n";
    if (!out) return report_error("bench", io_error("cannot write ", flags.export_times));
  }

  if (flags.dump_profile || !flags.export_profile.empty()) {
    runtime::Module& m = *first.modules[0];
    m.set_profiling(true);
    std::vector<std::vector<double>> per_layer(engine->layers.size());
    const int runs = std::max(3, std::min(flags.iterations, 20));
    for (int r = 0; r < runs; ++r) {
      Status st = device.run(first.tasks[0]);
      if (!st.is_ok()) return report_error("bench", st);
      for (size_t i = 0; i < per_layer.size(); ++i) per_layer[i].push_back(m.last_layer_ms()[i]);
    }
    m.set_profiling(false);
    std::vector<LayerRow> rows;
    double total = 0;
    for (size_t i = 0; i < per_layer.size(); ++i) {
      const EngineLayer& l = engine->layers[i];
      const Stats s = stats_of(per_layer[i]);
      rows.push_back({l.name, l.op, element_type_name(l.precision), layer_format(*engine, l),
                      s.mean, s.median, s.mean * runs, 0});
      total += s.mean;
    }
    for (LayerRow& r : rows) r.share = total > 0 ? r.average_ms / total * 100 : 0;
    if (flags.dump_profile) {
      std::printf("\n=== Profile (%d iterations, batch %d) ===\n", runs, batch);
      std::printf("%-70s %-14s %-5s %-22s %10s %10s %7s\n", "Layer", "Op", "Prec", "Format",
                  "Avg (ms)", "Median", "%");
      for (const LayerRow& r : rows)
        std::printf("%-70s %-14s %-5s %-22s %10.4f %10.4f %6.1f%%\n",
                    (r.name.size() > 70 ? r.name.substr(0, 67) + "..." : r.name).c_str(),
                    r.op.c_str(), r.precision.c_str(), r.format.c_str(), r.average_ms, r.median_ms,
                    r.share);
      std::printf("%-70s %-14s %-5s %-22s %10.4f\n", "Total", "", "", "", total);
    }
    if (!flags.export_profile.empty()) {
      nlohmann::json j = nlohmann::json::array();
      j.push_back({{"count", runs}});
      for (const LayerRow& r : rows)
        j.push_back({{"name", r.name},
                     {"op", r.op},
                     {"precision", r.precision},
                     {"format", r.format},
                     {"timeMs", r.total_ms},
                     {"averageMs", r.average_ms},
                     {"medianMs", r.median_ms},
                     {"percentage", r.share}});
      std::ofstream out(flags.export_profile);
      out << j.dump(2) << "\n";
      if (!out) return report_error("bench", io_error("cannot write ", flags.export_profile));
      const std::string svg_path =
          std::filesystem::path(flags.export_profile).replace_extension(".svg").string();
      std::ofstream svg(svg_path);
      svg << profile_svg(rows, str_cat("slowest layers of ", flags.engine, ", batch ", batch, ", ",
                                       device.describe()));
      if (!svg) return report_error("bench", io_error("cannot write ", svg_path));
      std::printf("profile: %s, chart: %s\n", flags.export_profile.c_str(), svg_path.c_str());
    }
  }

  // --devices with several entries: all at once, against the first alone (measured above).
  if (instances.size() > 1) {
    auto rates = run_together(instances, flags, batch);
    if (!rates) return report_error("bench", rates.status());
    const double alone = qps * batch;
    double total = 0;
    std::printf("\n=== Devices (%zu instances at once, each from its own thread) ===\n",
                instances.size());
    for (size_t k = 0; k < instances.size(); ++k) {
      std::printf("instance %zu (device %d: %s): %.1f img/s\n", k, instances[k]->device_index,
                  instances[k]->device->describe().c_str(), (*rates)[k]);
      total += (*rates)[k];
    }
    std::printf("Total: %.1f img/s; instance 0 alone: %.1f img/s; scaling efficiency: %.1f %%\n",
                total, alone, alone > 0 ? total / (alone * double(instances.size())) * 100 : 0.0);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure an engine as trtexec does");
  cmd->add_option("--loadEngine", f->engine, "Engine file from qyolo build")->required();
  cmd->add_option("--batch", f->batch, "Images per task (default: the engine's max batch)");
  cmd->add_option("--warmUp", f->warm_up_ms, "Warm-up time in ms")->capture_default_str();
  cmd->add_option("--duration", f->duration_s, "Minimum measured time in s")->capture_default_str();
  cmd->add_option("--iterations", f->iterations, "Minimum measured iterations")
      ->capture_default_str();
  cmd->add_option("--streams", f->streams, "Engine instances run side by side")
      ->capture_default_str();
  cmd->add_flag("--useCudaGraph", f->cuda_graph, "Capture the network into a CUDA graph (cuda)");
  cmd->add_option("--exportTimes", f->export_times, "Per-iteration times as JSON");
  cmd->add_option("--exportProfile", f->export_profile,
                  "Per-layer profile as JSON, and an SVG bar chart beside it");
  cmd->add_flag("--dumpProfile", f->dump_profile, "Print the per-layer profile");
  cmd->add_option("--devices", f->devices,
                  "all, or device indices like 0,1 (repeats: more instances on one device): "
                  "after the report of the first, all run at once and the scaling is reported");
  cmd->callback([f, &exit_code] { exit_code = run_bench(*f); });
}

}  // namespace qyolo::cli
