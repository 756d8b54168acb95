// qyolo build: an ONNX model and a calibration cache in, an engine file out, with trtexec's
// flag names (--onnx --calib --int8 --fp16 --layerPrecisions --inputIOFormats
// --outputIOFormats --saveEngine) plus --target and --maxBatch. Prints what every pass did,
// the FP16 fallback list (as DLA's report of layers it does not run) and the memory plan.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "qyolo/commands.h"
#include "qyolo/engine_builder.h"
#include "qyolo/onnx.h"
#include "qyolo/precision_flags.h"

namespace qyolo::cli {
namespace {

struct BuildFlags {
  std::string onnx;
  PrecisionFlags precision;
  bool fp16 = false;
  std::string input_formats = "fp32:chw";
  std::string output_formats = "fp32:chw";
  std::string target = "cpu";
  int max_batch = 1;
  std::string save_engine;
};

// trtexec takes one format per I/O tensor, comma-separated; the engine has one per side.
Expected<IoFormat> parse_formats(const std::string& text, const char* flag) {
  std::vector<IoFormat> formats;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    QYOLO_ASSIGN_OR_RETURN(IoFormat f, parse_io_format(text.substr(start, end - start)));
    formats.push_back(f);
    start = end + 1;
  }
  for (IoFormat f : formats)
    if (f != formats[0])
      return unsupported(flag, " ", text, ": one format for every tensor of that side");
  return formats[0];
}

int run_build(const BuildFlags& flags) {
  auto graph = load_onnx(flags.onnx);
  if (!graph) return report_error("build", graph.status());
  BuildOptions options;
  options.source = std::filesystem::path(flags.onnx).filename().string();
  options.qyolo_version = QYOLO_VERSION;
  options.max_batch = flags.max_batch;
  options.int8 = flags.precision.int8;
  if (!flags.precision.int8 && !flags.fp16)
    return report_error("build", invalid_argument("give --int8 (with --calib), --fp16, or both"));
  Status precision =
      resolve_precision(flags.precision, *graph, options.scales, options.fp16_layers);
  if (!precision.is_ok()) return report_error("build", precision);
  auto target = parse_target(flags.target);
  if (!target) return report_error("build", target.status());
  options.target = *target;
  auto in = parse_formats(flags.input_formats, "--inputIOFormats");
  if (!in) return report_error("build", in.status());
  auto out = parse_formats(flags.output_formats, "--outputIOFormats");
  if (!out) return report_error("build", out.status());
  options.input_format = *in;
  options.output_format = *out;
  if (const char* off = std::getenv("QYOLO_DISABLE_FUSION"); off && std::string(off) == "1")
    options.fusion = false;
  if (const char* keep = std::getenv("QYOLO_KEEP_CONCAT_COPIES"); keep && std::string(keep) == "1")
    options.fuse_concat_copies = false;

  auto built = build_engine(*graph, options);
  if (!built) return report_error("build", with_context(built.status(), flags.onnx));
  const Engine& e = built->engine;
  if (!e.fallbacks.empty() && !flags.fp16)
    return report_error("build", invalid_argument(e.fallbacks.size(), " layers need FP16 (first: ",
                                                  e.fallbacks[0].layer, ", ", e.fallbacks[0].reason,
                                                  "); add --fp16"));
  std::printf("qyolo build: %s -> %s (target %s, max batch %d%s)\n", flags.onnx.c_str(),
              flags.save_engine.c_str(), target_name(e.target).c_str(), e.max_batch,
              options.fusion ? "" : ", fusion off");
  for (const PassReport& p : built->passes)
    std::printf("  %-26s %s\n", p.pass.c_str(), p.summary.c_str());
  int int8_layers = 0, fp16_layers = 0;
  for (const EngineLayer& l : e.layers) {
    if (l.kind == LayerKind::kInputReformat || l.kind == LayerKind::kOutputReformat) continue;
    (l.precision == ElementType::kInt8 ? int8_layers : fp16_layers)++;
  }
  std::printf("layers: %zu (%d int8, %d fp16, %zu reformat)\n", e.layers.size(), int8_layers,
              fp16_layers, e.inputs.size() + e.outputs.size());
  std::printf("FP16 fallback: %zu nodes%s\n", e.fallbacks.size(), e.fallbacks.empty() ? "" : ":");
  for (const EngineFallback& f : e.fallbacks)
    std::printf("  %s (%s)\n", f.layer.c_str(), f.reason.c_str());
  for (const auto* list : {&e.inputs, &e.outputs})
    for (const EngineIo& io : *list)
      std::printf("%s %s %s %dx%dx%dx%d scale %.9g\n", list == &e.inputs ? "input " : "output",
                  io.name.c_str(), io_format_name(io.format).c_str(), e.max_batch, io.channels,
                  io.height, io.width, double(io.scale));
  Status saved = save_engine(e, flags.save_engine);
  if (!saved.is_ok()) return report_error("build", saved);
  std::printf("engine: %zu bytes of weights, arena %llu bytes at batch %d; saved %s (%llu bytes)\n",
              e.weights.size(), static_cast<unsigned long long>(e.arena_bytes()), e.max_batch,
              flags.save_engine.c_str(),
              static_cast<unsigned long long>(std::filesystem::file_size(flags.save_engine)));
  return 0;
}

}  // namespace

void add_build_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<BuildFlags>();
  CLI::App* cmd = app.add_subcommand("build", "Build an engine file from an ONNX model");
  cmd->add_option("--onnx", f->onnx, "ONNX model (full export or trimmed at the heads)")
      ->required();
  add_precision_flags(cmd, f->precision, "Build INT8 layers from the cache's scales (needs --calib)");
  cmd->add_flag("--fp16", f->fp16, "Allow FP16 layers (--layerPrecisions, layers without a scale)");
  cmd->add_option("--inputIOFormats", f->input_formats, "int8:hwc4 | fp16:chw16 | fp32:chw")
      ->capture_default_str();
  cmd->add_option("--outputIOFormats", f->output_formats, "fp16:chw16 | int8:chw32 | fp32:chw")
      ->capture_default_str();
  cmd->add_option("--target", f->target, "cpu | cuda")->capture_default_str();
  cmd->add_option("--maxBatch", f->max_batch, "Largest batch a task may run")
      ->capture_default_str();
  cmd->add_option("--saveEngine", f->save_engine, "Engine file to write")->required();
  cmd->callback([f, &exit_code] { exit_code = run_build(*f); });
}

}  // namespace qyolo::cli
