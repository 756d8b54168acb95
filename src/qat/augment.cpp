// Training-sample augmentation (YOLOv5's basics: HSV jitter, random scale, horizontal flip)
// and the loss plot. No LibTorch here.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "qyolo/draw.h"
#include "qyolo/qat.h"

namespace qyolo {
namespace {

// OpenCV's 8-bit RGB -> HSV (H in [0, 180)).
void rgb_to_hsv(const uint8_t* rgb, uint8_t* hsv) {
  const int r = rgb[0], g = rgb[1], b = rgb[2];
  const int v = std::max({r, g, b}), mn = std::min({r, g, b}), diff = v - mn;
  const int s = v == 0 ? 0 : static_cast<int>(std::lround(255.0 * diff / v));
  double h = 0.0;
  if (diff != 0) {
    if (v == r)
      h = 60.0 * (g - b) / diff;
    else if (v == g)
      h = 120.0 + 60.0 * (b - r) / diff;
    else
      h = 240.0 + 60.0 * (r - g) / diff;
    if (h < 0) h += 360.0;
  }
  hsv[0] = static_cast<uint8_t>(static_cast<int>(std::lround(h / 2.0)) % 180);
  hsv[1] = static_cast<uint8_t>(s);
  hsv[2] = static_cast<uint8_t>(v);
}

void hsv_to_rgb(const uint8_t* hsv, uint8_t* rgb) {
  const double h = hsv[0] * 2.0, s = hsv[1] / 255.0, v = hsv[2];
  const double c = v * s, x = c * (1.0 - std::fabs(std::fmod(h / 60.0, 2.0) - 1.0)), m = v - c;
  double r = 0, g = 0, b = 0;
  const int sector = static_cast<int>(h / 60.0) % 6;
  switch (sector) {
    case 0:
      r = c, g = x;
      break;
    case 1:
      r = x, g = c;
      break;
    case 2:
      g = c, b = x;
      break;
    case 3:
      g = x, b = c;
      break;
    case 4:
      r = x, b = c;
      break;
    default:
      r = c, b = x;
      break;
  }
  auto to8 = [](double value) {
    return static_cast<uint8_t>(std::clamp<long>(std::lround(value), 0, 255));
  };
  rgb[0] = to8(r + m), rgb[1] = to8(g + m), rgb[2] = to8(b + m);
}

void draw_line(Image& image, int x0, int y0, int x1, int y1, Color color) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    fill_rect(image, x0, y0, x0 + 2, y0 + 2, color);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

}  // namespace

void augment_hsv(Image& image, double hue_gain, double saturation_gain, double value_gain) {
  // ultralytics' LUTs: hue wraps at 180, saturation and value clip at 255.
  uint8_t lut_h[256], lut_s[256], lut_v[256];
  for (int x = 0; x < 256; ++x) {
    lut_h[x] = static_cast<uint8_t>(static_cast<int>(x * hue_gain) % 180);
    lut_s[x] = static_cast<uint8_t>(std::clamp(x * saturation_gain, 0.0, 255.0));
    lut_v[x] = static_cast<uint8_t>(std::clamp(x * value_gain, 0.0, 255.0));
  }
  for (size_t i = 0; i + 2 < image.pixels.size(); i += 3) {
    uint8_t hsv[3];
    rgb_to_hsv(&image.pixels[i], hsv);
    hsv[0] = lut_h[hsv[0]], hsv[1] = lut_s[hsv[1]], hsv[2] = lut_v[hsv[2]];
    hsv_to_rgb(hsv, &image.pixels[i]);
  }
}

Image augment(const Image& image, int size, const AugmentOptions& options, std::mt19937_64& rng,
              AugmentPlacement* placement_out) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double r_h = (2.0 * unit(rng) - 1.0) * options.hsv_h + 1.0;
  const double r_s = (2.0 * unit(rng) - 1.0) * options.hsv_s + 1.0;
  const double r_v = (2.0 * unit(rng) - 1.0) * options.hsv_v + 1.0;
  const double scale = 1.0 - options.scale * unit(rng);
  const bool flip = unit(rng) < options.flip;
  const int long_side = std::clamp(static_cast<int>(std::lround(size * scale)), 32, size);
  Letterbox placement;
  Image out = letterbox(image, long_side, size, &placement);
  augment_hsv(out, r_h, r_s, r_v);
  if (flip) {
    for (int y = 0; y < out.height; ++y) {
      uint8_t* row = out.row(y);
      for (int a = 0, b = out.width - 1; a < b; ++a, --b)
        std::swap_ranges(row + 3 * a, row + 3 * a + 3, row + 3 * b);
    }
  }
  if (placement_out) *placement_out = {placement, flip};
  return out;
}

Status write_loss_plot(const std::vector<double>& values, const std::string& title,
                       const std::string& path) {
  constexpr int kWidth = 640, kHeight = 400, kLeft = 70, kRight = 20, kTop = 30, kBottom = 40;
  Image image;
  image.width = kWidth;
  image.height = kHeight;
  image.pixels.assign(static_cast<size_t>(kWidth) * kHeight * 3, 255);
  const Color black{0, 0, 0}, blue{31, 119, 180};
  const int x0 = kLeft, x1 = kWidth - kRight, y0 = kHeight - kBottom, y1 = kTop;
  draw_line(image, x0, y0, x1, y0, black);
  draw_line(image, x0, y0, x0, y1, black);
  draw_text(image, kLeft, 8, title, black, 2);
  double lo = 0.0, hi = 1.0;
  if (!values.empty()) {
    lo = *std::min_element(values.begin(), values.end());
    hi = *std::max_element(values.begin(), values.end());
    if (!(hi > lo)) hi = lo + (lo == 0.0 ? 1.0 : std::fabs(lo) * 0.1);
  }
  char label[32];
  std::snprintf(label, sizeof label, "%.3g", hi);
  draw_text(image, 4, y1, label, black, 1);
  std::snprintf(label, sizeof label, "%.3g", lo);
  draw_text(image, 4, y0 - kGlyphHeight, label, black, 1);
  std::snprintf(label, sizeof label, "epoch %zu", values.size());
  draw_text(image, x1 - text_width(label, 1), y0 + 8, label, black, 1);
  draw_text(image, x0, y0 + 8, "1", black, 1);
  auto point = [&](size_t i) {
    const double fx = values.size() > 1 ? static_cast<double>(i) / (values.size() - 1) : 0.5;
    const double fy = (values[i] - lo) / (hi - lo);
    return std::pair<int, int>{x0 + static_cast<int>(fx * (x1 - x0)),
                               y0 - static_cast<int>(fy * (y0 - y1))};
  };
  for (size_t i = 0; i < values.size(); ++i) {
    const auto [px, py] = point(i);
    fill_rect(image, px - 3, py - 3, px + 4, py + 4, blue);
    if (i > 0) {
      const auto [qx, qy] = point(i - 1);
      draw_line(image, qx, qy, px, py, blue);
    }
  }
  return write_image(image, path);
}

}  // namespace qyolo
