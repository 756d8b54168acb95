// Images in and out (JPEG through libjpeg-turbo, PNG through libpng), resizing as OpenCV
// does, ultralytics' letterbox, YOLOv5 decoding and validation NMS.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

// An 8-bit interleaved RGB image.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3, RGB
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * 3; }
};

// Decodes a JPEG or PNG file (by content, not extension) into RGB; grayscale, palette and
// alpha images are converted. Errors name the file and what it is instead.
Expected<Image> read_image(const std::string& path);
// Writes a JPEG (quality 90) or PNG, chosen by the extension (.jpg/.jpeg or .png).
Status write_image(const Image& image, const std::string& path);

// OpenCV's cv::resize with INTER_LINEAR (half-pixel centres, 11-bit fixed-point weights).
Image resize_linear(const Image& image, int width, int height);
// OpenCV's cv::resize with INTER_AREA (pixel-area averaging, for shrinking).
Image resize_area(const Image& image, int width, int height);

// How an image was placed on the network's canvas, to map boxes back.
struct Letterbox {
  int original_width = 0, original_height = 0;
  int resized_width = 0, resized_height = 0;
  float gain = 1.0f;                 // resized / original
  float pad_x = 0.0f, pad_y = 0.0f;  // ultralytics' dw, dh (half the padding, as floats)
  int left = 0, top = 0;             // integer placement on the canvas
  int canvas_width = 0, canvas_height = 0;
};

// ultralytics v7.0 validation preprocessing: long side to `size` (INTER_AREA when shrinking,
// INTER_LINEAR when enlarging, rounding the short side up), then centred on a
// `canvas` x `canvas` field of 114 gray with top = round(dh - 0.1). A canvas larger than
// `size` (672 for 640) reproduces NVIDIA's DLA sample.
Image letterbox(const Image& image, int size, int canvas, Letterbox* placement);

// Fills batch slot `index` of an N x 3 x H x W float32 tensor with pixels / 255.
void image_to_tensor(const Image& image, Tensor& batch, int64_t index);

// One detection in pixel coordinates.
struct Detection {
  float x1, y1, x2, y2;
  float score;
  int class_id;  // 0..79 for COCO
};

struct NmsOptions {
  float conf_threshold = 0.001f;
  float iou_threshold = 0.6f;
  int max_det = 300;
  int max_nms = 30000;
  bool multi_label = true;
  bool agnostic = false;
};

// ultralytics' non_max_suppression for one image of decoded predictions (rows of
// cx, cy, w, h, obj, classes...): candidates obj > conf, score = obj * cls, one candidate per
// class above conf (multi-label), the highest max_nms into class-aware NMS, max_det kept.
std::vector<Detection> non_max_suppression(const float* predictions, int64_t rows, int64_t row_size,
                                           const NmsOptions& options);

// Maps boxes from the canvas back to the original image and clips them to it.
void scale_boxes(const Letterbox& placement, std::vector<Detection>& detections);

// The standard YOLOv5 anchors (pixels) for strides 8, 16, 32.
struct HeadAnchors {
  std::array<float, 3> strides = {8.0f, 16.0f, 32.0f};
  std::array<std::array<float, 6>, 3> anchors = {
      {{10, 13, 16, 30, 33, 23}, {30, 61, 62, 45, 59, 119}, {116, 90, 156, 198, 373, 326}}};
};
// Parses "10,13,16,30,33,23;30,61,...;116,90,..." into anchors.
Expected<HeadAnchors> parse_anchors(const std::string& text);

// Decodes the three raw head outputs of a trimmed model (N x 255 x H x W each, or
// N x 3 x H x W x 85) into N x (sum 3*H*W) x 85 rows, as the full export's Detect layer does:
// xy = (2 sigmoid - 0.5 + grid) * stride, wh = (2 sigmoid)^2 * anchor.
Expected<Tensor> decode_heads(const std::vector<const Tensor*>& heads, const HeadAnchors& anchors);

// The 80 COCO class names, in the model's class order.
const std::array<const char*, 80>& coco_class_names();

}  // namespace qyolo
