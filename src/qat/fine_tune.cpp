// Fine-tuning of a QAT graph: label-free distillation (the FP32 graph is the teacher, both
// run trimmed at the head convolutions, so at any input size; the loss compares the three
// heads, raw or after Detect's sigmoid) and, with labels, YOLOv5's detection loss on the
// student's heads.
// SGD with momentum, YOLOv5's cosine decay, a checkpoint per epoch.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "qat/qat_internal.h"
#include "qyolo/coco.h"

namespace qyolo {
namespace {

std::string fingerprint(const Graph& graph) {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a 64
  auto mix = [&](const std::string& text) {
    for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
    hash = (hash ^ 0xff) * 1099511628211ull;
  };
  for (const Node& node : graph.nodes) {
    mix(node.op_type);
    mix(node.name);
    for (const auto& input : node.inputs) mix(input);
  }
  // Values too: the same model calibrated another way is another starting point.
  for (const auto& [name, tensor] : graph.initializers) {
    mix(name + shape_str(tensor.shape()));
    mix(std::string(static_cast<const char*>(tensor.raw()), tensor.nbytes()));
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

Status write_log(const std::vector<EpochLog>& log, const std::string& dir,
                 const std::string& title) {
  const std::string csv = (std::filesystem::path(dir) / "log.csv").string();
  std::ofstream out(csv);
  out << "epoch,loss,lr,images_per_second\n";
  std::vector<double> losses;
  for (const auto& e : log) {
    char line[128];
    std::snprintf(line, sizeof line, "%d,%.9g,%.9g,%.4g\n", e.epoch, e.loss, e.lr,
                  e.images_per_second);
    out << line;
    losses.push_back(e.loss);
  }
  out.close();
  if (!out) return io_error("cannot write ", csv);
  return write_loss_plot(losses, title, (std::filesystem::path(dir) / "loss.png").string());
}

// The models each run trimmed at `size`: the teacher is the float graph, the student the
// QAT graph.
Expected<Graph> training_graph(const Graph& graph, int size) {
  QYOLO_ASSIGN_OR_RETURN(Graph trimmed, trim_at_heads(graph));
  return with_input_size(trimmed, size);
}

}  // namespace

Expected<DistillationTarget> parse_distillation_target(const std::string& name) {
  if (name == "logits") return DistillationTarget::kLogits;
  if (name == "sigmoid") return DistillationTarget::kSigmoid;
  if (name == "objectness") return DistillationTarget::kObjectness;
  return invalid_argument("--distill-on '", name, "': expected logits, sigmoid or objectness");
}

const char* distillation_target_name(DistillationTarget target) {
  switch (target) {
    case DistillationTarget::kLogits:
      return "logits";
    case DistillationTarget::kSigmoid:
      return "sigmoid";
    case DistillationTarget::kObjectness:
      return "objectness";
  }
  return "?";
}

torch::Tensor distillation_loss(const std::vector<torch::Tensor>& student,
                                const std::vector<torch::Tensor>& teacher,
                                DistillationTarget target, int64_t num_anchors) {
  torch::Tensor total = torch::zeros({}, student.at(0).options());
  for (size_t k = 0; k < student.size(); ++k) {
    const torch::Tensor reference = teacher.at(k).detach();
    if (target == DistillationTarget::kLogits) {
      total = total + torch::mse_loss(student[k], reference);
    } else if (target == DistillationTarget::kSigmoid) {
      // Detect reads every channel through a sigmoid: a background logit of -12 against -9
      // is no error there, and no longer dominates the loss.
      total = total + torch::mse_loss(student[k].sigmoid(), reference.sigmoid());
    } else {
      // N x na x H x W x (5 + nc); channel 4 is the objectness. An anchor counts as much as
      // the more confident model thinks it holds an object: background cells fade out, a
      // false positive of the student does not.
      const torch::Tensor s = detect_layout(student[k], num_anchors).sigmoid();
      const torch::Tensor t = detect_layout(reference, num_anchors).sigmoid();
      const torch::Tensor weight =
          torch::maximum(s.select(-1, 4), t.select(-1, 4)).detach().unsqueeze(-1);
      const torch::Tensor weighted = (weight * (s - t).square()).sum();
      total = total + weighted / (weight.sum() * s.size(-1)).clamp_min(1e-12);
    }
  }
  return total / static_cast<double>(student.size());
}

Expected<FineTuneResult> fine_tune(const Graph& fp32, const Graph& qat,
                                   const std::vector<std::string>& images,
                                   const FineTuneOptions& options,
                                   const std::function<void(const FineTuneProgress&)>& progress) {
  if (options.epochs < 0) return invalid_argument("--epochs ", options.epochs, " is negative");
  if (options.batch < 1) return invalid_argument("--batch ", options.batch, " is not positive");
  if (!(options.lr > 0.0) || !std::isfinite(options.lr))
    return invalid_argument("--lr ", options.lr, " is not a positive number");
  if (images.empty()) return not_found("no training images");
  const bool supervised = !options.labels.empty();
  if (supervised && options.labels.size() != images.size()) {
    return invalid_argument("labels for ", options.labels.size(), " images, but ", images.size(),
                            " images");
  }
  const double distill_weight =
      options.distill_weight >= 0.0 ? options.distill_weight : (supervised ? 0.0 : 1.0);
  if (!std::isfinite(distill_weight))
    return invalid_argument("--distill-weight ", options.distill_weight, " is not a number");
  if (!supervised && !(distill_weight > 0.0)) {
    return invalid_argument("--distill-weight ", distill_weight,
                            " without annotations leaves nothing to train on");
  }
  if (options.output_dir.empty()) return invalid_argument("no output folder for checkpoints");
  std::error_code ec;
  std::filesystem::create_directories(options.output_dir, ec);
  if (ec) return io_error("cannot create ", options.output_dir, ": ", ec.message());

  const int size = options.image_size;
  QYOLO_ASSIGN_OR_RETURN(Graph float_graph, upgrade_to_opset13(fp32));
  QYOLO_ASSIGN_OR_RETURN(Graph teacher_graph, training_graph(float_graph, size));
  QYOLO_ASSIGN_OR_RETURN(
      Graph student_graph,
      training_graph(options.engine_rounding ? engine_rounding(qat, options.fp16_layers) : qat,
                     size));
  if (teacher_graph.outputs.size() != student_graph.outputs.size()) {
    return invalid_argument("the QAT graph has ", student_graph.outputs.size(),
                            " head convolutions, the FP32 graph ", teacher_graph.outputs.size());
  }
  QYOLO_ASSIGN_OR_RETURN(auto teacher, QatModel::create(teacher_graph, options.device));
  QYOLO_ASSIGN_OR_RETURN(auto student, QatModel::create(student_graph, options.device));
  for (auto& p : teacher->impl().parameters) p.set_requires_grad(false);
  // The detection loss reads the heads as Detect does: strides 8, 16, 32, 3 anchors, 80 classes.
  const torch::Tensor anchors = default_grid_anchors(torch::TensorOptions(student->impl().device));
  const DetectionLossHyp hyp = detection_loss_gains(DetectionLossHyp(), 3, kCoco80Classes, size);
  if (supervised) {
    const auto& heads = student_graph.outputs;
    for (size_t k = 0; k < heads.size(); ++k) {
      const int64_t stride = int64_t{8} << k;
      if (heads.size() != 3 || heads[k].shape.size() != 4 ||
          heads[k].shape[1] != 3 * (5 + kCoco80Classes) ||
          heads[k].shape[2] != (size + stride - 1) / stride) {
        return invalid_argument("the detection loss needs three heads of ",
                                3 * (5 + kCoco80Classes), " channels at strides 8, 16, 32; head ",
                                k, " '", heads[k].name, "' is ", shape_str(heads[k].shape),
                                " at input size ", size);
      }
    }
  }

  // Decoded once: the epochs only re-augment.
  std::vector<Image> decoded;
  const size_t wanted =
      options.max_images > 0 ? std::min<size_t>(options.max_images, images.size()) : images.size();
  for (size_t i = 0; i < wanted; ++i) {
    QYOLO_ASSIGN_OR_RETURN(Image image, read_image(images[i]));
    decoded.push_back(std::move(image));
  }

  FineTuneResult result;
  auto& params = student->impl().parameters;
  torch::optim::SGD optimizer(params, torch::optim::SGDOptions(options.lr)
                                          .momentum(options.momentum)
                                          .nesterov(options.momentum > 0.0)
                                          .weight_decay(options.weight_decay));
  // A checkpoint is for one starting point and one loss (the qdq student with logits
  // distillation keeps the fingerprint it had before --student and --distill-on existed).
  std::string id = fingerprint(qat);
  if (supervised) id += str_cat("+detection+", distill_weight);
  if (options.engine_rounding) {
    id += "+engine-rounding";
    for (const auto& layer : options.fp16_layers) id += "+" + layer;
  }
  if (distill_weight > 0.0 && options.distill_on != DistillationTarget::kLogits)
    id += str_cat("+distill-on-", distillation_target_name(options.distill_on));
  const std::string checkpoint =
      (std::filesystem::path(options.output_dir) / "checkpoint.pt").string();
  int start_epoch = 0;
  try {
    if (options.resume && std::filesystem::exists(checkpoint)) {
      torch::serialize::InputArchive archive;
      archive.load_from(checkpoint);
      c10::IValue saved_id;
      if (!archive.try_read("fingerprint", saved_id) || !saved_id.isString() ||
          saved_id.toStringRef() != id) {
        return invalid_argument("checkpoint ", checkpoint,
                                " was made for another model, placement or loss (fingerprint ",
                                saved_id.isString() ? saved_id.toStringRef() : std::string("none"),
                                ", this one ", id, "); remove it or use another output folder");
      }
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < params.size(); ++k) {
        torch::Tensor value;
        archive.read(str_cat("param_", k), value);
        params[k].copy_(value);
      }
      torch::serialize::InputArchive optimizer_archive;
      archive.read("optimizer", optimizer_archive);
      optimizer.load(optimizer_archive);
      torch::Tensor log;
      archive.read("log", log);
      for (int64_t e = 0; e < log.size(0); ++e) {
        result.log.push_back({static_cast<int>(log[e][0].item<double>()), log[e][1].item<double>(),
                              log[e][2].item<double>(), log[e][3].item<double>()});
      }
      start_epoch = static_cast<int>(result.log.size());
      result.resumed_from_epoch = start_epoch;
    }
  } catch (const c10::Error& e) {
    return io_error("cannot read checkpoint ", checkpoint, ": ", e.what_without_backtrace());
  }

  // Data-parallel: each step takes `batch` images per rank from one global batch of the
  // epoch's order. Every rank must start from the same epoch and the same weights.
  ProcessGroup* group = options.group;
  const int rank = group ? group->rank() : 0;
  const int world = group ? group->size() : 1;
  if (group) {
    std::vector<float> epoch = {static_cast<float>(start_epoch)};
    QYOLO_RETURN_IF_ERROR(group->broadcast(epoch));
    if (static_cast<int>(epoch[0]) != start_epoch) {
      return invalid_argument("rank ", rank, " resumes from epoch ", start_epoch, " of ",
                              checkpoint, ", rank 0 from epoch ", static_cast<int>(epoch[0]),
                              ": -o must be one folder that every rank sees");
    }
    try {
      broadcast_parameters(*group, params, 0);
    } catch (const std::exception& e) {
      return internal_error("rank ", rank, ": broadcast of the weights: ", e.what());
    }
  }
  const int64_t global_batch = static_cast<int64_t>(options.batch) * world;
  const int64_t steps_per_epoch =
      (static_cast<int64_t>(decoded.size()) + global_batch - 1) / global_batch;
  const int64_t total_steps = std::max<int64_t>(1, steps_per_epoch * options.epochs);
  torch::manual_seed(options.seed);
  const auto start = std::chrono::steady_clock::now();
  try {
    for (int epoch = start_epoch; epoch < options.epochs; ++epoch) {
      // Each epoch's order depends on (seed, epoch) only and each sample's augmentation on
      // (seed, epoch, image) only, so a resumed run sees what an uninterrupted one would, and
      // splitting the order over ranks changes no sample.
      std::mt19937_64 rng(options.seed * 1000003ull + static_cast<uint64_t>(epoch));
      std::vector<size_t> order(decoded.size());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      const auto epoch_start = std::chrono::steady_clock::now();
      double loss_sum = 0.0, lr = options.lr;
      int64_t seen = 0;
      const bool report = progress && rank == 0;
      if (report) progress({epoch + 1, options.epochs, 0, steps_per_epoch, 0.0, 0.0});
      for (int64_t step = 0; step < steps_per_epoch; ++step) {
        const int64_t global_first = step * global_batch;
        const int64_t global_count = std::min<int64_t>(global_batch, decoded.size() - global_first);
        const int64_t first = global_first + static_cast<int64_t>(rank) * options.batch;
        const int64_t count = std::clamp<int64_t>(decoded.size() - first, 0, options.batch);
        Tensor batch(DType::kFloat32, {count, 3, size, size});
        std::vector<float> target_rows;  // image, class, x, y, w, h
        for (int64_t b = 0; b < count; ++b) {
          AugmentPlacement placement;
          const size_t index = order[first + b];
          std::seed_seq sample_seed{static_cast<uint32_t>(options.seed),
                                    static_cast<uint32_t>(options.seed >> 32),
                                    static_cast<uint32_t>(epoch), static_cast<uint32_t>(index)};
          std::mt19937_64 sample_rng(sample_seed);
          image_to_tensor(augment(decoded[index], size, options.augment, sample_rng, &placement),
                          batch, b);
          if (!supervised) continue;
          for (const auto& t : augmented_targets(options.labels[index], placement)) {
            target_rows.push_back(static_cast<float>(b));
            target_rows.insert(target_rows.end(), t.begin(), t.end());
          }
        }
        const int64_t global = static_cast<int64_t>(epoch) * steps_per_epoch + step;
        const double progress_fraction = static_cast<double>(global) / total_steps;
        lr = options.lr *
             (((1.0 - std::cos(progress_fraction * M_PI)) / 2.0) * (options.lr_final - 1.0) + 1.0);
        for (auto& group : optimizer.param_groups())
          static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);

        optimizer.zero_grad();
        double value = 0.0;
        torch::Tensor loss;
        if (count > 0) {
          const torch::Tensor input = to_torch(batch).to(student->impl().device);
          const std::vector<torch::Tensor> outputs = student->impl().run(input);
          loss = torch::zeros({}, input.options());
          if (distill_weight > 0.0) {
            std::vector<torch::Tensor> teacher_heads;
            {
              torch::NoGradGuard no_grad;
              teacher_heads = teacher->impl().run(input);
            }
            loss = loss + distill_weight *
                              distillation_loss(outputs, teacher_heads, options.distill_on, 3);
          }
          if (supervised) {
            std::vector<torch::Tensor> heads;
            for (const auto& output : outputs) heads.push_back(detect_layout(output, 3));
            const int64_t rows = static_cast<int64_t>(target_rows.size() / 6);
            const torch::Tensor targets =
                torch::from_blob(target_rows.data(), {rows, 6}, torch::kFloat32).clone();
            loss = loss + detection_loss(heads, targets, anchors, hyp).total.sum();
          }
          value = loss.item<double>();
        }
        if (options.inject_nan_at_step == global + 1) value = std::nan("");
        // The loss of the global batch: each rank's mean weighted by its share of the images,
        // summed over the ranks (a NaN anywhere reaches every rank, so all stop together).
        int64_t step_count = count;
        if (group) {
          std::vector<double> sums = {value * count, static_cast<double>(count)};
          QYOLO_RETURN_IF_ERROR(group->all_reduce_sum(sums));
          value = sums[0] / std::max(sums[1], 1.0);
          step_count = static_cast<int64_t>(sums[1]);
        }
        if (!std::isfinite(value)) {
          const bool kept = std::filesystem::exists(checkpoint);
          return invalid_argument("loss is ", value, " at epoch ", epoch + 1, " step ", step + 1,
                                  " (global step ", global + 1, "); stopped. ",
                                  kept ? str_cat("The last good checkpoint, ", checkpoint,
                                                 " (epoch ", result.log.size(), "), is kept")
                                       : std::string("No checkpoint was written yet"));
        }
        // Averaged gradients equal one process's on the global batch when the loss is a mean
        // over images (distillation on logits or sigmoid): each rank's mean is scaled by its
        // share count / (global_count / world). The detection loss and objectness weighting
        // normalise over the whole batch, so there this is DDP's convention (the average of
        // each rank's batch loss), not the same arithmetic.
        if (count > 0) {
          if (group) loss = loss * (static_cast<double>(count) * world / global_count);
          loss.backward();
        }
        if (group && !options.skip_all_reduce) average_gradients(*group, params);
        optimizer.step();
        loss_sum += value * step_count;
        seen += step_count;
        if (report) {
          const double s =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
          progress({epoch + 1, options.epochs, step + 1, steps_per_epoch, loss_sum / seen,
                    s > 0 ? seen / s : 0.0});
        }
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      result.log.push_back({epoch + 1, loss_sum / std::max<int64_t>(seen, 1), lr,
                            seconds > 0 ? seen / seconds : 0.0});

      if (rank != 0) continue;  // rank 0 writes for all: the state is the same on every rank
      torch::serialize::OutputArchive archive;
      archive.write("fingerprint", c10::IValue(id));
      for (size_t k = 0; k < params.size(); ++k) archive.write(str_cat("param_", k), params[k]);
      torch::serialize::OutputArchive optimizer_archive;
      optimizer.save(optimizer_archive);
      archive.write("optimizer", optimizer_archive);
      torch::Tensor log =
          torch::zeros({static_cast<int64_t>(result.log.size()), 4}, torch::kFloat64);
      for (size_t e = 0; e < result.log.size(); ++e) {
        log[e][0] = result.log[e].epoch;
        log[e][1] = result.log[e].loss;
        log[e][2] = result.log[e].lr;
        log[e][3] = result.log[e].images_per_second;
      }
      archive.write("log", log);
      // Written aside and renamed, so a crash mid-write keeps the previous checkpoint.
      archive.save_to(checkpoint + ".tmp");
      std::filesystem::rename(checkpoint + ".tmp", checkpoint, ec);
      if (ec) return io_error("cannot write ", checkpoint, ": ", ec.message());
      QYOLO_RETURN_IF_ERROR(write_log(
          result.log, options.output_dir,
          supervised ? (distill_weight > 0.0 ? "detection + distillation loss" : "detection loss")
                     : str_cat("distillation loss (", distillation_target_name(options.distill_on),
                               ")")));
    }
  } catch (const c10::Error& e) {
    return internal_error("fine-tuning: ", e.what_without_backtrace());
  } catch (const std::exception& e) {  // a collective's error that is not c10's (Gloo's, 1.13)
    return internal_error("rank ", rank, ": fine-tuning: ", e.what());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  QYOLO_ASSIGN_OR_RETURN(Graph trained, student->to_graph());
  result.graph = qat;
  for (auto& [name, tensor] : trained.initializers) {
    auto it = result.graph.initializers.find(name);
    if (it != result.graph.initializers.end()) it->second = tensor;
  }
  // Weights the student read unquantized (engine_rounding) still have a Q/DQ in the export:
  // every weight scale follows its weight, as the translator's max calibration expects.
  try {
    for (const Node& node : result.graph.nodes) {
      if (node.op_type != "QuantizeLinear" || node.inputs.size() < 2) continue;
      auto weight = result.graph.initializers.find(node.inputs[0]);
      if (weight == result.graph.initializers.end() || weight->second.shape().size() != 4)
        continue;
      QYOLO_ASSIGN_OR_RETURN(result.graph.initializers[node.inputs[1]],
                             from_torch(weight_scales(to_torch(weight->second))));
    }
  } catch (const c10::Error& e) {
    return internal_error("weight scales: ", e.what_without_backtrace());
  }
  return result;
}

}  // namespace qyolo
