// qyolo cocoeval --gt <instances.json> --dt <results.json>: pycocotools' COCOeval (bbox).
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>

#include "qyolo/coco.h"
#include "qyolo/commands.h"

namespace qyolo::cli {
namespace {

struct CocoEvalOptions {
  std::string gt;
  std::string dt;
  std::string export_metrics;
};

// The shortest text that reads back as `value`: metrics files keep full precision.
std::string number_text(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

Status write_metrics(const std::string& path, const CocoEvalOptions& options, const CocoDataset& gt,
                     const CocoEvalResult& result, double seconds) {
  std::string out = "{\n  \"stats\": [";
  for (size_t i = 0; i < result.stats.size(); ++i) {
    out += (i ? ", " : "") + number_text(result.stats[i]);
  }
  out += "],\n";
  out +=
      "  \"stat_names\": [\"AP\", \"AP50\", \"AP75\", \"APs\", \"APm\", \"APl\", \"AR1\", "
      "\"AR10\", \"AR100\", \"ARs\", \"ARm\", \"ARl\"],\n";
  out += "  \"gt\": " + json_string(options.gt) + ",\n";
  out += "  \"dt\": " + json_string(options.dt) + ",\n";
  out += "  \"images\": " + std::to_string(result.params.image_ids.size()) + ",\n";
  out += "  \"categories\": " + std::to_string(result.params.category_ids.size()) + ",\n";
  out += "  \"ground_truth\": " + std::to_string(result.num_ground_truth) + ",\n";
  out += "  \"detections\": " + std::to_string(result.num_detections) + ",\n";
  out += "  \"seconds\": " + number_text(seconds) + ",\n";
  out += "  \"per_category\": [";
  const auto per_category = coco_per_category_ap(result);
  for (size_t i = 0; i < per_category.size(); ++i) {
    const CocoCategoryAp& c = per_category[i];
    const CocoCategory* category = gt.find_category(c.category_id);
    out += i ? ",\n    " : "\n    ";
    out += "{\"id\": " + std::to_string(c.category_id) +
           ", \"name\": " + json_string(category ? category->name : "") +
           ", \"gt\": " + std::to_string(c.num_gt) + ", \"ap\": " + number_text(c.ap) +
           ", \"ap50\": " + number_text(c.ap50) + "}";
  }
  out += per_category.empty() ? "]\n}\n" : "\n  ]\n}\n";
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return io_error("cannot write ", path);
  const bool written = std::fwrite(out.data(), 1, out.size(), file) == out.size();
  if (std::fclose(file) != 0 || !written) return io_error("cannot write ", path);
  return Status::ok();
}

int run_cocoeval(const CocoEvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto gt = load_coco_annotations(options.gt);
  if (!gt) return report_error("cocoeval", gt.status());
  auto dt = load_coco_results(options.dt, *gt);
  if (!dt) return report_error("cocoeval", dt.status());
  if (dt->empty()) {
    // pycocotools' loadRes fails on an empty list; its evaluation of detections that all
    // miss the evaluated categories gives 0 where there is ground truth, and so do we.
    std::fprintf(stderr,
                 "qyolo cocoeval: warning: %s holds no detections; AP and AR are 0 "
                 "(-1 without ground truth)\n",
                 options.dt.c_str());
  }
  auto result = evaluate_coco_bbox(*gt, *dt);
  if (!result) return report_error("cocoeval", result.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fputs(coco_summary_text(*result).c_str(), stdout);
  if (!options.export_metrics.empty()) {
    const Status status = write_metrics(options.export_metrics, options, *gt, *result, seconds);
    if (!status.is_ok()) return report_error("cocoeval", status);
  }
  return 0;
}

}  // namespace

void add_cocoeval_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<CocoEvalOptions>();
  CLI::App* cmd = app.add_subcommand("cocoeval", "COCO bbox evaluation (pycocotools' COCOeval)");
  cmd->add_option("--gt", options->gt, "Ground truth, a COCO instances JSON file")->required();
  cmd->add_option("--dt", options->dt, "Detections, a COCO results JSON file")->required();
  cmd->add_option("--export-metrics", options->export_metrics,
                  "Write the 12 stats (full precision) and per-category AP as JSON");
  cmd->callback([options, &exit_code] { exit_code = run_cocoeval(*options); });
}

}  // namespace qyolo::cli
