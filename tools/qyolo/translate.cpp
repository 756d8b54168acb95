// qyolo translate <qat.onnx> -o <dir>: NVIDIA's Q/DQ translator. Writes <stem>_noqdq.onnx,
// <stem>_precision_config_calib.cache, <stem>_precision_config.json and
// <stem>_precision_config_layer_arg.txt. NVIDIA's underscore flag spellings work too.
#include <cstdio>
#include <filesystem>

#include "qyolo/commands.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"

namespace qyolo::cli {
namespace {

struct TranslateCliOptions {
  std::vector<std::string> models;
  std::string output_dir = "./converted";
  std::string trt_calib_version = "8600";
  std::string calibration_type = "max";
  std::string sigmoid_scale = "unit";
  bool verbose = false;
  TranslateOptions translate;
};

void print_report(const std::string& model, const Translation& t, const TranslationFiles& files,
                  const TranslateCliOptions& options) {
  std::printf("model     %s\n", model.c_str());
  std::printf("Q/DQ      %d pairs removed (%d on activations, %d on weights)\n",
              t.activation_qdq + t.weight_qdq, t.activation_qdq, t.weight_qdq);
  std::printf("scales    %zu tensors (%zu from Q/DQ, %d inferred)\n", t.scales.size(),
              t.scales.size() - static_cast<size_t>(t.inferred), t.inferred);
  std::printf("fp16      %zu nodes fall back to FP16\n", t.fp16_nodes.size());
  if (options.verbose || options.translate.infer_all) {
    for (const auto& u : t.unscaled) {
      std::string consumers;
      for (const auto& c : u.consumers) consumers += (consumers.empty() ? "" : ", ") + c;
      std::printf("  no scale  %s (%s)%s%s\n", u.tensor.c_str(), u.reason.c_str(),
                  consumers.empty() ? "" : ": FP16 for ", consumers.c_str());
    }
  }
  std::printf("wrote     %s\n          %s\n          %s\n          %s\n", files.onnx.c_str(),
              files.cache.c_str(), files.json.c_str(), files.layer_arg.c_str());
}

int run_translate(TranslateCliOptions options) {
  if (options.models.empty()) {
    return report_error("translate",
                        invalid_argument("no model given: qyolo translate <qat.onnx> -o <dir>"));
  }
  options.translate.check_weight_scales = options.calibration_type == "max";
  options.translate.sigmoid_scale =
      options.sigmoid_scale == "mul-output" ? SigmoidScale::kMulOutput : SigmoidScale::kUnit;
  for (const auto& model : options.models) {
    auto graph = load_onnx(model);
    if (!graph) return report_error("translate", graph.status());
    auto translation = translate_qdq(*graph, options.translate);
    if (!translation) return report_error("translate", with_context(translation.status(), model));
    for (const auto& warning : translation->warnings) {
      std::fprintf(stderr, "qyolo translate: warning: %s\n", warning.c_str());
    }
    const std::string stem = std::filesystem::path(model).stem().string();
    auto files =
        write_translation(*translation, options.output_dir, stem, options.trt_calib_version);
    if (!files) return report_error("translate", files.status());
    print_report(model, *translation, *files, options);
  }
  return 0;
}

}  // namespace

void add_translate_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TranslateCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "translate", "Q/DQ translator: a QAT ONNX model -> ONNX without Q/DQ + calibration cache");
  cmd->add_option("models", options->models, "QAT ONNX model(s)");
  cmd->add_option("-i,--input-onnx-models,--input_onnx_models", options->models,
                  "QAT ONNX model(s), as NVIDIA's translator takes them");
  cmd->add_option("-o,--output-dir,--output_dir", options->output_dir,
                  "Output folder (default ./converted)");
  cmd->add_option("--trt-calib-version,--trt_calib_version", options->trt_calib_version,
                  "TensorRT version in the cache header (default 8600)");
  cmd->add_flag("--infer-concat-scales,--infer_concat_scales",
                options->translate.infer_concat_scales,
                "Concat output takes its largest input scale; inputs take the output's");
  cmd->add_flag("--infer-mul-scales,--infer_mul_scales", options->translate.infer_mul_scales,
                "Carry scales through Mul; a SiLU's Sigmoid output gets 1/127");
  cmd->add_flag("--infer-average-pool-scales,--infer_average_pool_scales",
                options->translate.infer_average_pool_scales,
                "Carry scales through AveragePool, GlobalAveragePool and ReduceMean");
  cmd->add_option("--addtl-ops-to-infer-adjacent-scales,--addtl_ops_to_infer_adjacent_scales",
                  options->translate.extra_ops,
                  "More ops that pass scales between input 0 and output 0 (e.g. Add Resize)")
      ->expected(1, -1);
  cmd->add_flag("--add-unary-ew-scales-for-dla,--add_unary_ew_scales_for_dla",
                options->translate.add_unary_ew_scales_for_dla,
                "Scale 1.0 for an unscaled Conv output whose only reader is a two-input Add");
  cmd->add_option("--calibration-type,--calibration_type", options->calibration_type,
                  "max: check weight scales are max|w|/127; hist: skip the check")
      ->check(CLI::IsMember({"max", "hist"}));
  cmd->add_flag("--rename-node-outputs,--rename_node_outputs",
                options->translate.rename_node_outputs, "Rename each output after its node");
  cmd->add_option("--sigmoid-scale", options->sigmoid_scale,
                  "SiLU Sigmoid output scale: unit (1/127, NVIDIA's code) or mul-output "
                  "(the Mul output's, with the rules and line order of NVIDIA's shipped cache)")
      ->check(CLI::IsMember({"unit", "mul-output"}));
  cmd->add_flag("--infer-all", options->translate.infer_all,
                "Beyond NVIDIA: infer through Concat, Mul, Add, Resize, Split, Slice; clamp "
                "weights to the QAT range; complete FP16 list and report");
  cmd->add_flag("--verbose", options->verbose, "List every tensor left without a scale");
  cmd->callback([options, &exit_code] { exit_code = run_translate(*options); });
}

}  // namespace qyolo::cli
