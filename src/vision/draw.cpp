#include "qyolo/draw.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string_view>

namespace qyolo {
namespace {

// The font, drawn for this project, as strips of glyphs side by side: each row string holds
// one 5-pixel row of every glyph in the strip, glyphs separated by one space. Rows 0-6 sit on
// the baseline; rows 7-8 are the descenders of g, j, p, q, y and the comma.
struct FontStrip {
  std::string_view chars;
  std::array<std::string_view, kGlyphHeight> rows;
};

// clang-format off
constexpr FontStrip kFontStrips[] = {
    {"ABCDEFGHIJKLM",
     {".###. ####. .###. ####. ##### ##### .###. #...# .###. ..### #...# #.... #...#",
      "#...# #...# #...# #...# #.... #.... #...# #...# ..#.. ...#. #..#. #.... ##.##",
      "#...# #...# #.... #...# #.... #.... #.... #...# ..#.. ...#. #.#.. #.... #.#.#",
      "##### ####. #.... #...# ####. ####. #.### ##### ..#.. ...#. ##... #.... #.#.#",
      "#...# #...# #.... #...# #.... #.... #...# #...# ..#.. ...#. #.#.. #.... #...#",
      "#...# #...# #...# #...# #.... #.... #...# #...# ..#.. #..#. #..#. #.... #...#",
      "#...# ####. .###. ####. ##### #.... .#### #...# .###. .##.. #...# ##### #...#",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ....."}},
    {"NOPQRSTUVWXYZ",
     {"#...# .###. ####. .###. ####. .#### ##### #...# #...# #...# #...# #...# #####",
      "#...# #...# #...# #...# #...# #.... ..#.. #...# #...# #...# #...# #...# ....#",
      "##..# #...# #...# #...# #...# #.... ..#.. #...# #...# #...# .#.#. .#.#. ...#.",
      "#.#.# #...# ####. #...# ####. .###. ..#.. #...# #...# #.#.# ..#.. ..#.. ..#..",
      "#..## #...# #.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.# .#.#. ..#.. .#...",
      "#...# #...# #.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.# #...# ..#.. #....",
      "#...# .###. #.... .##.# #...# ####. ..#.. .###. ..#.. .#.#. #...# ..#.. #####",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ....."}},
    {"abcdefghijklm",
     {"..... #.... ..... ....# ..... ..##. ..... #.... ..#.. ...#. #.... .##.. .....",
      "..... #.... ..... ....# ..... .#..# ..... #.... ..... ..... #.... ..#.. .....",
      ".###. ####. .###. .#### .###. .#... .#### #.##. .##.. ..##. #..#. ..#.. ##.#.",
      "....# #...# #.... #...# #...# ###.. #...# ##..# ..#.. ...#. #.#.. ..#.. #.#.#",
      ".#### #...# #.... #...# ##### .#... #...# #...# ..#.. ...#. ##... ..#.. #.#.#",
      "#...# #...# #...# #...# #.... .#... #...# #...# ..#.. ...#. #.#.. ..#.. #.#.#",
      ".#### ####. .###. .#### .###. .#... .#### #...# .###. ...#. #..#. .###. #.#.#",
      "..... ..... ..... ..... ..... ..... ....# ..... ..... #..#. ..... ..... .....",
      "..... ..... ..... ..... ..... ..... .###. ..... ..... .##.. ..... ..... ....."}},
    {"nopqrstuvwxyz",
     {"..... ..... ..... ..... ..... ..... .#... ..... ..... ..... ..... ..... .....",
      "..... ..... ..... ..... ..... ..... .#... ..... ..... ..... ..... ..... .....",
      "#.##. .###. ####. .#### #.##. .#### ###.. #...# #...# #...# #...# #...# #####",
      "##..# #...# #...# #...# ##..# #.... .#... #...# #...# #...# .#.#. #...# ...#.",
      "#...# #...# #...# #...# #.... .###. .#... #...# #...# #.#.# ..#.. #...# ..#..",
      "#...# #...# #...# #...# #.... ....# .#..# #..## .#.#. #.#.# .#.#. #...# .#...",
      "#...# .###. ####. .#### #.... ####. ..##. .##.# ..#.. .#.#. #...# .#### #####",
      "..... ..... #.... ....# ..... ..... ..... ..... ..... ..... ..... ....# .....",
      "..... ..... #.... ....# ..... ..... ..... ..... ..... ..... ..... .###. ....."}},
    {"0123456789",
     {".###. ..#.. .###. ##### ...#. ##### ..##. ##### .###. .###.",
      "#...# .##.. #...# ...#. ..##. #.... .#... ....# #...# #...#",
      "#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#. #...# #...#",
      "#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#.. .###. .####",
      "##..# ..#.. ..#.. ....# ##### ....# #...# .#... #...# ....#",
      "#...# ..#.. .#... #...# ...#. #...# #...# .#... #...# ...#.",
      ".###. .###. ##### .###. ...#. .###. .###. .#... .###. .##..",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... .....",
      "..... ..... ..... ..... ..... ..... ..... ..... ..... ....."}},
    {" .:%-_()",
     {"..... ..... ..... ##... ..... ..... ...#. .#...",
      "..... ..... .##.. ##..# ..... ..... ..#.. ..#..",
      "..... ..... .##.. ...#. ..... ..... .#... ...#.",
      "..... ..... ..... ..#.. ##### ..... .#... ...#.",
      "..... ..... .##.. .#... ..... ..... .#... ...#.",
      "..... .##.. .##.. #..## ..... ..... ..#.. ..#..",
      "..... .##.. ..... ...## ..... ..... ...#. .#...",
      "..... ..... ..... ..... ..... ##### ..... .....",
      "..... ..... ..... ..... ..... ..... ..... ....."}},
    {"/,+=!?'",
     {"....# ..... ..... ..... ..#.. .###. ..#..",
      "....# ..... ..#.. ..... ..#.. #...# ..#..",
      "...#. ..... ..#.. ##### ..#.. ....# .#...",
      "..#.. ..... ##### ..... ..#.. ...#. .....",
      ".#... ..... ..#.. ##### ..#.. ..#.. .....",
      "#.... ..##. ..#.. ..... ..... ..... .....",
      "#.... ..##. ..... ..... ..#.. ..#.. .....",
      "..... ..#.. ..... ..... ..... ..... .....",
      "..... .#... ..... ..... ..... ..... ....."}},
};

// Drawn for characters the font lacks.
constexpr std::array<std::string_view, kGlyphHeight> kBoxGlyph = {
    "#####",
    "#...#",
    "#...#",
    "#...#",
    "#...#",
    "#...#",
    "#####",
    ".....",
    "....."};
// clang-format on

struct FontTable {
  std::array<std::array<uint8_t, kGlyphHeight>, 128> glyphs{};
  std::array<bool, 128> present{};
  std::array<uint8_t, kGlyphHeight> box{};
  bool well_formed = true;  // every row the right length, only '#' and '.', no repeats
};

constexpr uint8_t row_bits(std::string_view row, size_t start, bool& ok) {
  uint8_t bits = 0;
  for (size_t x = 0; x < kGlyphWidth; ++x) {
    const char c = row[start + x];
    if (c != '#' && c != '.') ok = false;
    bits = static_cast<uint8_t>((bits << 1) | (c == '#' ? 1 : 0));
  }
  return bits;
}

constexpr FontTable build_font() {
  FontTable table;
  for (int y = 0; y < kGlyphHeight; ++y) {
    table.box[y] = row_bits(kBoxGlyph[y], 0, table.well_formed);
  }
  for (const FontStrip& strip : kFontStrips) {
    const size_t count = strip.chars.size();
    bool rows_fit = true;
    for (const std::string_view row : strip.rows) {
      rows_fit = rows_fit && row.size() == count * kGlyphAdvance - 1;
    }
    if (!rows_fit) {
      table.well_formed = false;
      return table;
    }
    for (size_t i = 0; i < count; ++i) {
      const auto c = static_cast<unsigned char>(strip.chars[i]);
      if (c >= 128 || table.present[c]) {
        table.well_formed = false;
        return table;
      }
      table.present[c] = true;
      for (int y = 0; y < kGlyphHeight; ++y) {
        const size_t start = i * kGlyphAdvance;
        table.glyphs[c][y] = row_bits(strip.rows[y], start, table.well_formed);
        if (i + 1 < count && strip.rows[y][start + kGlyphWidth] != ' ') table.well_formed = false;
      }
    }
  }
  return table;
}

constexpr FontTable kFont = build_font();
static_assert(kFont.well_formed,
              "a font strip row has the wrong length, a stray character, "
              "or a character defined twice");

const std::array<uint8_t, kGlyphHeight>& glyph_of(char c) {
  const auto index = static_cast<unsigned char>(c);
  return index < 128 && kFont.present[index] ? kFont.glyphs[index] : kFont.box;
}

// ultralytics.utils.plotting.Colors, in its order.
constexpr std::array<uint32_t, 20> kPalette = {0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231,
                                               0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334, 0x00D4BB,
                                               0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC,
                                               0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7};

// sRGB relative luminance (WCAG 2).
double relative_luminance(Color c) {
  auto linear = [](uint8_t v) {
    const double s = v / 255.0;
    return s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b);
}

// Box coordinates to pixels as ultralytics does (truncation), kept far from int overflow.
int to_pixel(float v) {
  if (!std::isfinite(v)) return 0;
  return static_cast<int>(std::clamp(v, -1e7f, 1e7f));
}

std::string label_text(const Detection& d, const std::vector<std::string>& class_names) {
  const bool named = d.class_id >= 0 && static_cast<size_t>(d.class_id) < class_names.size();
  char score[32];
  std::snprintf(score, sizeof(score), "%.2f", static_cast<double>(d.score));
  return (named ? class_names[d.class_id] : std::to_string(d.class_id)) + " " + score;
}

}  // namespace

Color class_color(int class_id) {
  const int index = ((class_id % 20) + 20) % 20;
  const uint32_t hex = kPalette[index];
  return {static_cast<uint8_t>(hex >> 16), static_cast<uint8_t>(hex >> 8),
          static_cast<uint8_t>(hex)};
}

Color text_color_for(Color background) {
  const double l = relative_luminance(background);
  const double contrast_black = (l + 0.05) / 0.05;
  const double contrast_white = 1.05 / (l + 0.05);
  return contrast_black > contrast_white ? Color{0, 0, 0} : Color{255, 255, 255};
}

void fill_rect(Image& image, int x1, int y1, int x2, int y2, Color color) {
  x1 = std::max(x1, 0);
  y1 = std::max(y1, 0);
  x2 = std::min(x2, image.width);
  y2 = std::min(y2, image.height);
  for (int y = y1; y < y2; ++y) {
    uint8_t* p = image.row(y) + static_cast<size_t>(x1) * 3;
    for (int x = x1; x < x2; ++x, p += 3) {
      p[0] = color.r;
      p[1] = color.g;
      p[2] = color.b;
    }
  }
}

void draw_rect(Image& image, int x1, int y1, int x2, int y2, Color color, int line_width) {
  if (line_width <= 0 || x2 <= x1 || y2 <= y1) return;
  // Widths past half the rectangle just fill it; capping also keeps the sums below in range.
  line_width = std::min({line_width, x2 - x1, y2 - y1});
  fill_rect(image, x1, y1, x2, y1 + line_width, color);
  fill_rect(image, x1, y2 - line_width, x2, y2, color);
  fill_rect(image, x1, y1, x1 + line_width, y2, color);
  fill_rect(image, x2 - line_width, y1, x2, y2, color);
}

const std::string& font_characters() {
  static const std::string chars = [] {
    std::string all;
    for (const FontStrip& strip : kFontStrips) all += strip.chars;
    return all;
  }();
  return chars;
}

std::vector<uint8_t> glyph_rows(char c) {
  const auto& rows = glyph_of(c);
  return {rows.begin(), rows.end()};
}

int text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kGlyphAdvance - 1) * scale;
}

int text_height(int scale) { return kGlyphHeight * scale; }

void draw_text(Image& image, int x, int y, const std::string& text, Color color, int scale) {
  if (scale <= 0) return;
  for (size_t i = 0; i < text.size(); ++i) {
    const int left = x + static_cast<int>(i) * kGlyphAdvance * scale;
    if (left >= image.width) break;
    const auto& rows = glyph_of(text[i]);
    for (int gy = 0; gy < kGlyphHeight; ++gy) {
      for (int gx = 0; gx < kGlyphWidth; ++gx) {
        if (!(rows[gy] >> (kGlyphWidth - 1 - gx) & 1)) continue;
        const int px = left + gx * scale, py = y + gy * scale;
        fill_rect(image, px, py, px + scale, py + scale, color);
      }
    }
  }
}

int box_line_width(const Image& image) {
  return std::max(static_cast<int>(std::lround(0.003 * (image.width + image.height) / 2)), 2);
}

int label_scale(const Image& image) {
  return std::max(static_cast<int>(std::lround(std::max(image.width, image.height) / 320.0)), 1);
}

void draw_detections(Image& image, const std::vector<Detection>& detections,
                     const std::vector<std::string>& class_names) {
  if (image.width <= 0 || image.height <= 0) return;
  const int line_width = box_line_width(image);
  const int scale = label_scale(image);
  const int pad = scale;
  // Lowest score first, so the most confident boxes and labels end up on top.
  std::vector<size_t> order(detections.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto sort_key = [&](size_t i) {  // NaN first, keeping the ordering strict
    const float score = detections[i].score;
    return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sort_key(a) < sort_key(b); });

  // The outline is centred on the box edges, as cv2.rectangle draws it.
  struct Outer {
    int x1, y1, x2, y2;
  };
  auto outer = [&](const Detection& d) {
    const int half = line_width / 2;
    return Outer{to_pixel(d.x1) - half, to_pixel(d.y1) - half, to_pixel(d.x2) - half + line_width,
                 to_pixel(d.y2) - half + line_width};
  };
  for (size_t i : order) {
    const Outer box = outer(detections[i]);
    draw_rect(image, box.x1, box.y1, box.x2, box.y2, class_color(detections[i].class_id),
              line_width);
  }
  // Labels after all boxes, so no box line runs through a label.
  for (size_t i : order) {
    const Detection& d = detections[i];
    const Outer box = outer(d);
    const std::string text = label_text(d, class_names);
    const int width = text_width(text, scale) + 2 * pad;
    const int height = text_height(scale) + 2 * pad;
    int x = std::max(std::min(box.x1, image.width - width), 0);
    int y = box.y1 - height;
    if (y < 0) y = std::clamp(box.y1, 0, std::max(image.height - height, 0));
    const Color background = class_color(d.class_id);
    fill_rect(image, x, y, x + width, y + height, background);
    draw_text(image, x + pad, y + pad, text, text_color_for(background), scale);
  }
}

}  // namespace qyolo
