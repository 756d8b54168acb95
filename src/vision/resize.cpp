// cv::resize for 8-bit RGB, reproduced so that letterboxed inputs match ultralytics' (which
// resizes with OpenCV) pixel for pixel: INTER_LINEAR with 11-bit fixed-point weights, and
// INTER_AREA's pixel-area table.
#include <algorithm>
#include <cmath>

#include "qyolo/vision.h"

namespace qyolo {
namespace {

constexpr int kCoefBits = 11;
constexpr int kCoefScale = 1 << kCoefBits;

// cvRound on a float: round half to even, as saturate_cast does.
inline int round_even(float v) { return static_cast<int>(std::nearbyint(v)); }

inline short to_coef(float weight) {
  return static_cast<short>(std::clamp(round_even(weight * kCoefScale), -32768, 32767));
}

}  // namespace

Image resize_linear(const Image& image, int width, int height) {
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  const double scale_x = static_cast<double>(image.width) / width;
  const double scale_y = static_cast<double>(image.height) / height;

  // Horizontal table: source column and two weights per destination column.
  std::vector<int> xofs(width);
  std::vector<short> alpha(width * 2);
  for (int dx = 0; dx < width; ++dx) {
    float fx = static_cast<float>((dx + 0.5) * scale_x - 0.5);
    int sx = static_cast<int>(std::floor(fx));
    fx -= static_cast<float>(sx);
    if (sx < 0) fx = 0, sx = 0;
    if (sx >= image.width - 1) fx = 0, sx = image.width - 1;
    xofs[dx] = sx;
    alpha[dx * 2] = to_coef(1.0f - fx);
    alpha[dx * 2 + 1] = to_coef(fx);
  }
  std::vector<int> row0(width * 3), row1(width * 3);
  auto horizontal = [&](int sy, std::vector<int>& row) {
    const uint8_t* s = image.row(sy);
    for (int dx = 0; dx < width; ++dx) {
      const int sx = xofs[dx];
      const int next = std::min(sx + 1, image.width - 1);
      for (int c = 0; c < 3; ++c) {
        row[dx * 3 + c] = s[sx * 3 + c] * alpha[dx * 2] + s[next * 3 + c] * alpha[dx * 2 + 1];
      }
    }
  };
  for (int dy = 0; dy < height; ++dy) {
    float fy = static_cast<float>((dy + 0.5) * scale_y - 0.5);
    int sy = static_cast<int>(std::floor(fy));
    fy -= static_cast<float>(sy);
    const short b0 = to_coef(1.0f - fy), b1 = to_coef(fy);
    horizontal(std::clamp(sy, 0, image.height - 1), row0);
    horizontal(std::clamp(sy + 1, 0, image.height - 1), row1);
    uint8_t* d = out.row(dy);
    for (int x = 0; x < width * 3; ++x) {
      // OpenCV's VResizeLinear<uchar>: two 16-bit multiplies, then round.
      const int v = (((b0 * (row0[x] >> 4)) >> 16) + ((b1 * (row1[x] >> 4)) >> 16) + 2) >> 2;
      d[x] = static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
  return out;
}

namespace {

struct AreaTap {
  int dst, src;
  float alpha;
};

// OpenCV's computeResizeAreaTab: which source cells cover each destination cell, and how much.
std::vector<AreaTap> area_table(int src_size, int dst_size, double scale) {
  std::vector<AreaTap> taps;
  for (int dx = 0; dx < dst_size; ++dx) {
    const double fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const double cell = std::min(scale, src_size - fsx1);
    int sx1 = static_cast<int>(std::ceil(fsx1)), sx2 = static_cast<int>(std::floor(fsx2));
    sx2 = std::min(sx2, src_size - 1);
    sx1 = std::min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) taps.push_back({dx, sx1 - 1, static_cast<float>((sx1 - fsx1) / cell)});
    for (int sx = sx1; sx < sx2; ++sx) taps.push_back({dx, sx, static_cast<float>(1.0 / cell)});
    if (fsx2 - sx2 > 1e-3) {
      taps.push_back(
          {dx, sx2, static_cast<float>(std::min(std::min(fsx2 - sx2, 1.0), cell) / cell)});
    }
  }
  return taps;
}

// OpenCV's resizeAreaFast: integer shrink factors average whole blocks; 2x2 rounds half up.
Image resize_area_integer(const Image& image, int width, int height, int kx, int ky) {
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  const float scale = 1.0f / static_cast<float>(kx * ky);
  for (int dy = 0; dy < height; ++dy) {
    uint8_t* d = out.row(dy);
    for (int dx = 0; dx < width; ++dx) {
      for (int c = 0; c < 3; ++c) {
        int sum = 0;
        for (int y = 0; y < ky; ++y) {
          const uint8_t* s = image.row(dy * ky + y) + (dx * kx) * 3 + c;
          for (int x = 0; x < kx; ++x) sum += s[x * 3];
        }
        d[dx * 3 + c] = static_cast<uint8_t>(
            kx == 2 && ky == 2 ? (sum + 2) >> 2 : std::clamp(round_even(sum * scale), 0, 255));
      }
    }
  }
  return out;
}

}  // namespace

Image resize_area(const Image& image, int width, int height) {
  const double scale_x = static_cast<double>(image.width) / width;
  const double scale_y = static_cast<double>(image.height) / height;
  const int kx = static_cast<int>(scale_x), ky = static_cast<int>(scale_y);
  if (kx >= 1 && ky >= 1 && std::abs(scale_x - kx) < 2.2204460492503131e-16 &&
      std::abs(scale_y - ky) < 2.2204460492503131e-16) {
    return resize_area_integer(image, width, height, kx, ky);
  }
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  const auto xtab = area_table(image.width, width, static_cast<double>(image.width) / width);
  const auto ytab = area_table(image.height, height, static_cast<double>(image.height) / height);
  std::vector<float> buf(width * 3), sum(width * 3, 0.0f);
  int prev_dy = ytab.empty() ? 0 : ytab[0].dst;
  auto flush = [&](int dy) {
    uint8_t* d = out.row(dy);
    for (int x = 0; x < width * 3; ++x)
      d[x] = static_cast<uint8_t>(std::clamp(round_even(sum[x]), 0, 255));
  };
  for (const AreaTap& y : ytab) {
    std::fill(buf.begin(), buf.end(), 0.0f);
    const uint8_t* s = image.row(y.src);
    for (const AreaTap& x : xtab) {
      for (int c = 0; c < 3; ++c) buf[x.dst * 3 + c] += s[x.src * 3 + c] * x.alpha;
    }
    if (y.dst != prev_dy) {
      flush(prev_dy);
      for (int x = 0; x < width * 3; ++x) sum[x] = y.alpha * buf[x];
      prev_dy = y.dst;
    } else {
      for (int x = 0; x < width * 3; ++x) sum[x] += y.alpha * buf[x];
    }
  }
  flush(prev_dy);
  return out;
}

Image letterbox(const Image& image, int size, int canvas, Letterbox* placement) {
  Letterbox p;
  p.original_width = image.width;
  p.original_height = image.height;
  const double r = static_cast<double>(size) / std::max(image.width, image.height);
  Image resized;
  if (r != 1.0) {
    // ultralytics' load_image rounds the resized sides up.
    const int w = static_cast<int>(std::ceil(image.width * r));
    const int h = static_cast<int>(std::ceil(image.height * r));
    resized = r > 1.0 ? resize_linear(image, w, h) : resize_area(image, w, h);
  }
  const Image& src = r != 1.0 ? resized : image;
  p.resized_width = src.width;
  p.resized_height = src.height;
  p.gain = static_cast<float>(static_cast<double>(src.height) / image.height);
  // The letterbox itself never rescales here (scaleup is off and the image already fits).
  p.canvas_width = p.canvas_height = canvas;
  const double dw = (canvas - src.width) / 2.0, dh = (canvas - src.height) / 2.0;
  p.pad_x = static_cast<float>(dw);
  p.pad_y = static_cast<float>(dh);
  p.left = static_cast<int>(std::round(dw - 0.1));
  p.top = static_cast<int>(std::round(dh - 0.1));
  Image out;
  out.width = out.height = canvas;
  out.pixels.assign(static_cast<size_t>(canvas) * canvas * 3, 114);
  for (int y = 0; y < src.height; ++y) {
    std::copy(src.row(y), src.row(y) + src.width * 3, out.row(y + p.top) + p.left * 3);
  }
  if (placement) *placement = p;
  return out;
}

void image_to_tensor(const Image& image, Tensor& batch, int64_t index) {
  const int64_t plane = static_cast<int64_t>(image.width) * image.height;
  float* dst = batch.data<float>() + index * 3 * plane;
  const uint8_t* src = image.pixels.data();
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) dst[c * plane + i] = static_cast<float>(src[i * 3 + c]) / 255.0f;
  }
}

}  // namespace qyolo
