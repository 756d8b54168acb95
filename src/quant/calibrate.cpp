// Post-training calibration: images through the FP32 executor, a histogram of |x| per
// activation, amax by max, percentile, entropy or MSE, and the TensorRT cache.
#include <algorithm>
#include <cmath>
#include <set>

#include "quant/quant_internal.h"
#include "qyolo/quant.h"

namespace qyolo {
namespace {

// A tensor that is always 0 still needs a positive scale; any tiny one quantizes it exactly.
constexpr float kMinAmax = 1e-8f;

}  // namespace

Expected<CalibrationMethod> parse_calibration_method(const std::string& name) {
  if (name == "max") return CalibrationMethod::kMax;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "entropy") return CalibrationMethod::kEntropy;
  if (name == "mse") return CalibrationMethod::kMse;
  return invalid_argument("unknown calibration method '", name,
                          "'; expected max, percentile, entropy or mse");
}

const char* calibration_algorithm(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kMax:
      return "MaxCalibration";
    case CalibrationMethod::kPercentile:
      return "PercentileCalibration";
    case CalibrationMethod::kEntropy:
      return "EntropyCalibration2";
    case CalibrationMethod::kMse:
      return "MSECalibration";
  }
  return "EntropyCalibration2";
}

Expected<std::vector<std::string>> calibration_tensors(
    const Graph& graph, const std::map<std::string, Shape>& input_shapes) {
  QYOLO_ASSIGN_OR_RETURN(ShapeInfo shapes, infer_shapes(graph, input_shapes));
  const quant::ConstantValues constants(graph);
  std::vector<std::string> tensors;
  std::set<std::string> seen;
  auto consider = [&](const std::string& name) {
    if (name.empty() || seen.count(name) || constants.contains(name) || shapes.constant(name))
      return;
    const ValueInfo* info = shapes.find(name);
    if (!info || info->dtype != DType::kFloat32) return;
    seen.insert(name);
    tensors.push_back(name);
  };
  for (const auto& input : graph.inputs) {
    if (!graph.find_initializer(input.name)) consider(input.name);
  }
  Graph sorted = graph;
  QYOLO_RETURN_IF_ERROR(topological_sort(sorted));
  for (const auto& node : sorted.nodes) {
    for (const auto& output : node.outputs) consider(output);
  }
  return tensors;
}

struct Calibrator::Impl {
  quant::ActivationProbe probe;
  std::vector<AbsHistogram> histograms;
  int64_t batches = 0;
};

Calibrator::Calibrator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Calibrator::~Calibrator() = default;

Expected<std::unique_ptr<Calibrator>> Calibrator::create(
    const Graph& graph, std::vector<std::string> tensors,
    const std::map<std::string, Shape>& input_shapes, int num_bins) {
  if (tensors.empty()) {
    QYOLO_ASSIGN_OR_RETURN(tensors, calibration_tensors(graph, input_shapes));
  }
  if (tensors.empty()) return invalid_argument("the model has no float activation to calibrate");
  QYOLO_ASSIGN_OR_RETURN(auto probe, quant::ActivationProbe::create(graph, tensors, input_shapes));
  auto impl = std::make_unique<Impl>(Impl{std::move(probe), {}, 0});
  impl->histograms.assign(impl->probe.values().size(), AbsHistogram(num_bins));
  return std::unique_ptr<Calibrator>(new Calibrator(std::move(impl)));
}

Status Calibrator::add_batch(const std::map<std::string, Tensor>& inputs) {
  Impl& m = *impl_;
  QYOLO_ASSIGN_OR_RETURN(auto result, m.probe.run(inputs));
  const auto& names = m.probe.values();
  const int count = static_cast<int>(names.size());
  std::vector<Status> errors(names.size());
  // Tensors are independent: one histogram per thread at a time, each read once.
#pragma omp parallel for schedule(dynamic, 1)
  for (int k = 0; k < count; ++k) {
    const Tensor& value = *result.values[k];
    errors[k] = m.histograms[k].add(value.data<float>(), value.numel());
  }
  for (int k = 0; k < count; ++k) {
    if (!errors[k].is_ok()) return with_context(errors[k], str_cat("value '", names[k], "'"));
  }
  ++m.batches;
  return Status();
}

const std::vector<std::string>& Calibrator::tensors() const { return impl_->probe.values(); }
const std::vector<ValueInfo>& Calibrator::inputs() const {
  return impl_->probe.executor().inputs();
}
const AbsHistogram& Calibrator::histogram(size_t index) const { return impl_->histograms[index]; }
int64_t Calibrator::batches() const { return impl_->batches; }

std::vector<float> Calibrator::amax(const CalibrationOptions& options) const {
  const auto& histograms = impl_->histograms;
  const int count = static_cast<int>(histograms.size());
  std::vector<float> result(histograms.size(), 0.0f);
#pragma omp parallel for schedule(dynamic, 1)
  for (int k = 0; k < count; ++k) {
    const AbsHistogram& h = histograms[k];
    double amax = 0.0;
    switch (options.method) {
      case CalibrationMethod::kMax:
        amax = h.max_abs();
        break;
      case CalibrationMethod::kPercentile:
        amax = histogram_amax_percentile(h, options.percentile);
        break;
      case CalibrationMethod::kEntropy:
        amax = histogram_amax_entropy(h, options.start_bin, options.stride, options.num_bits,
                                      options.is_unsigned);
        break;
      case CalibrationMethod::kMse:
        amax = histogram_amax_mse(h, options.start_bin, options.stride, options.num_bits,
                                  options.is_unsigned);
        break;
    }
    const float value = static_cast<float>(amax);
    result[k] = std::isfinite(value) && value > kMinAmax ? value : kMinAmax;
  }
  return result;
}

CalibrationCache Calibrator::cache(const CalibrationOptions& options,
                                   const std::string& trt_version) const {
  CalibrationCache cache;
  cache.version = trt_version;
  cache.algorithm = calibration_algorithm(options.method);
  const std::vector<float> amax = this->amax(options);
  const auto& names = tensors();
  for (size_t k = 0; k < names.size(); ++k) {
    cache.entries.push_back({names[k], static_cast<float>(amax[k] / 127.0)});
  }
  return cache;
}

}  // namespace qyolo
