// Labels for supervised fine-tuning: COCO instances matched to the training images, and the
// boxes carried through the augmentation that placed each image. No LibTorch here.
#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "qyolo/coco.h"
#include "qyolo/qat.h"

namespace qyolo {

Expected<std::vector<std::vector<TrainingBox>>> load_training_labels(
    const std::string& annotations, const std::vector<std::string>& images,
    const std::string& images_dir) {
  QYOLO_ASSIGN_OR_RETURN(CocoDataset dataset, load_coco_annotations(annotations));
  std::unordered_map<std::string, size_t> by_relative_path, by_file_name;
  for (size_t i = 0; i < images.size(); ++i) {
    const std::filesystem::path path(images[i]);
    by_relative_path.emplace(path.lexically_relative(images_dir).generic_string(), i);
    by_file_name.emplace(path.filename().string(), i);
  }
  std::unordered_map<int64_t, size_t> slot_of_id;  // COCO image id -> index into `images`
  std::string first_missing;
  size_t missing = 0;
  for (size_t k = 0; k < dataset.images.size(); ++k) {
    const CocoImage& image = dataset.images[k];
    if (image.file_name.empty()) {
      return invalid_argument(annotations, ": images[", k, "] (id ", image.id,
                              ") has no 'file_name'");
    }
    auto found = by_relative_path.find(image.file_name);
    if (found != by_relative_path.end()) {
      slot_of_id[image.id] = found->second;
    } else if ((found = by_file_name.find(image.file_name)) != by_file_name.end()) {
      slot_of_id[image.id] = found->second;
    } else if (missing++ == 0) {
      first_missing = image.file_name;
    }
  }
  if (missing > 0) {
    return not_found(annotations, ": ", missing, " of its ", dataset.images.size(),
                     " images are not in ", images_dir, ", the first '", first_missing, "'");
  }
  std::unordered_map<int64_t, int> class_of_category;
  for (int c = 0; c < kCoco80Classes; ++c) class_of_category[coco80_to_91(c)] = c;

  std::vector<std::vector<TrainingBox>> labels(images.size());
  for (size_t k = 0; k < dataset.annotations.size(); ++k) {
    const CocoAnnotation& a = dataset.annotations[k];
    const auto slot = slot_of_id.find(a.image_id);
    if (slot == slot_of_id.end()) {
      return invalid_argument(annotations, ": annotations[", k, "]: image_id ", a.image_id,
                              " is not an image of the file");
    }
    const auto category = class_of_category.find(a.category_id);
    if (category == class_of_category.end()) {
      return invalid_argument(annotations, ": annotations[", k, "]: category_id ", a.category_id,
                              " is not one of COCO's 80 detection classes");
    }
    // ultralytics' COCO labels (JSON2YOLO) leave out crowds and empty boxes.
    if (a.iscrowd || !(a.bbox[2] > 0) || !(a.bbox[3] > 0)) continue;
    labels[slot->second].push_back({category->second, a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3]});
  }
  return labels;
}

std::vector<std::array<float, 5>> augmented_targets(const std::vector<TrainingBox>& boxes,
                                                    const AugmentPlacement& placement) {
  const Letterbox& p = placement.letterbox;
  const double scale_x = static_cast<double>(p.resized_width) / p.original_width;
  const double scale_y = static_cast<double>(p.resized_height) / p.original_height;
  const double width = p.canvas_width, height = p.canvas_height;
  std::vector<std::array<float, 5>> targets;
  for (const TrainingBox& box : boxes) {
    // Where the box's pixels went: scaled per axis as the resize did, shifted by the
    // padding, clipped to the image on the canvas.
    double x0 = std::clamp(box.x * scale_x, 0.0, double(p.resized_width)) + p.left;
    double x1 = std::clamp((box.x + box.width) * scale_x, 0.0, double(p.resized_width)) + p.left;
    const double y0 = std::clamp(box.y * scale_y, 0.0, double(p.resized_height)) + p.top;
    const double y1 =
        std::clamp((box.y + box.height) * scale_y, 0.0, double(p.resized_height)) + p.top;
    if (placement.flipped) {
      const double mirrored = width - x1;
      x1 = width - x0;
      x0 = mirrored;
    }
    if (x1 - x0 < 2.0 || y1 - y0 < 2.0) continue;
    targets.push_back(
        {static_cast<float>(box.class_index), static_cast<float>((x0 + x1) / 2 / width),
         static_cast<float>((y0 + y1) / 2 / height), static_cast<float>((x1 - x0) / width),
         static_cast<float>((y1 - y0) / height)});
  }
  return targets;
}

}  // namespace qyolo
