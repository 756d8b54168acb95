// Drawing: rectangles on exactly the right pixels and clipped at the edges, text only inside
// its cell, a font whose glyphs are all distinct, and labelled detections on any image size.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "qyolo/draw.h"

namespace qyolo {
namespace {

constexpr Color kRed{255, 0, 0};

Image blank(int width, int height, uint8_t value = 0) {
  Image image;
  image.width = width;
  image.height = height;
  image.pixels.assign(static_cast<size_t>(width) * height * 3, value);
  return image;
}

Color pixel(const Image& image, int x, int y) {
  const uint8_t* p = image.row(y) + x * 3;
  return {p[0], p[1], p[2]};
}

// Every pixel is `inside` where `expected(x, y)` holds and untouched (black) elsewhere.
void expect_painted(const Image& image, Color inside,
                    const std::function<bool(int, int)>& expected) {
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const Color want = expected(x, y) ? inside : Color{};
      ASSERT_EQ(pixel(image, x, y), want) << "pixel (" << x << ", " << y << ")";
    }
  }
}

// The bounding box of pixels that differ from `before`; empty (x2 <= x1) when none do.
struct Changed {
  int x1 = std::numeric_limits<int>::max(), y1 = std::numeric_limits<int>::max();
  int x2 = -1, y2 = -1;
  int count = 0;
};
Changed changed_pixels(const Image& before, const Image& after) {
  Changed c;
  for (int y = 0; y < after.height; ++y) {
    for (int x = 0; x < after.width; ++x) {
      if (pixel(before, x, y) == pixel(after, x, y)) continue;
      ++c.count;
      c.x1 = std::min(c.x1, x);
      c.y1 = std::min(c.y1, y);
      c.x2 = std::max(c.x2, x + 1);
      c.y2 = std::max(c.y2, y + 1);
    }
  }
  return c;
}

TEST(Draw, FillRectCoversTheHalfOpenRectangle) {
  Image image = blank(10, 8);
  fill_rect(image, 2, 3, 5, 6, kRed);
  expect_painted(image, kRed, [](int x, int y) { return x >= 2 && x < 5 && y >= 3 && y < 6; });
}

TEST(Draw, FillRectClipsToTheImage) {
  Image image = blank(10, 8);
  fill_rect(image, -5, -5, 3, 2, kRed);
  fill_rect(image, 8, 6, 100, 100, kRed);
  fill_rect(image, 20, 20, 30, 30, kRed);  // entirely outside
  fill_rect(image, 6, 6, 4, 7, kRed);      // inverted: nothing
  fill_rect(image, -100, 4, -1, 5, kRed);  // left of the image
  expect_painted(image, kRed, [](int x, int y) { return (x < 3 && y < 2) || (x >= 8 && y >= 6); });
}

TEST(Draw, RectOutlineIsTheOuterLineWidthPixels) {
  Image image = blank(20, 20);
  draw_rect(image, 2, 2, 12, 10, kRed, 2);
  expect_painted(image, kRed, [](int x, int y) {
    const bool in_outer = x >= 2 && x < 12 && y >= 2 && y < 10;
    const bool in_inner = x >= 4 && x < 10 && y >= 4 && y < 8;
    return in_outer && !in_inner;
  });
}

TEST(Draw, RectOutlineClipsAtEveryEdge) {
  Image image = blank(12, 9);
  draw_rect(image, -3, -3, 5, 5, kRed, 2);  // top-left corner hangs outside
  draw_rect(image, 9, 6, 20, 20, kRed, 1);  // bottom-right corner hangs outside
  expect_painted(image, kRed, [](int x, int y) {
    const bool top_left = x < 5 && y < 5 && (x >= 3 || y >= 3);
    const bool bottom_right = (x == 9 && y >= 6) || (y == 6 && x >= 9);
    return top_left || bottom_right;
  });
}

TEST(Draw, WideLineFillsTheRectangle) {
  Image image = blank(10, 10);
  draw_rect(image, 1, 1, 5, 4, kRed, 50);
  draw_rect(image, 6, 6, 9, 9, kRed, 0);  // zero width draws nothing
  expect_painted(image, kRed, [](int x, int y) { return x >= 1 && x < 5 && y >= 1 && y < 4; });
}

TEST(Draw, TextStaysInsideItsCell) {
  const Image before = blank(200, 60);
  for (int scale : {1, 2, 3}) {
    Image image = before;
    const std::string text = "person 0.87";
    draw_text(image, 5, 7, text, kRed, scale);
    const Changed c = changed_pixels(before, image);
    EXPECT_GT(c.count, 20 * scale * scale) << "scale " << scale;
    EXPECT_GE(c.x1, 5);
    EXPECT_GE(c.y1, 7);
    EXPECT_LE(c.x2, 5 + text_width(text, scale));
    EXPECT_LE(c.y2, 7 + text_height(scale));
    for (int y = 0; y < image.height; ++y) {
      for (int x = 0; x < image.width; ++x) {
        const Color p = pixel(image, x, y);
        ASSERT_TRUE(p == Color{} || p == kRed) << "only the text colour is drawn";
      }
    }
  }
}

TEST(Draw, TextSizes) {
  EXPECT_EQ(text_width("", 2), 0);
  EXPECT_EQ(text_width("a", 1), kGlyphWidth);
  EXPECT_EQ(text_width("ab", 2), 2 * (kGlyphAdvance + kGlyphWidth));
  EXPECT_EQ(text_height(3), 3 * kGlyphHeight);
}

TEST(Draw, TextClipsAtTheEdges) {
  Image image = blank(30, 12);
  draw_text(image, -7, -5, "clock 0.54", kRed, 2);
  draw_text(image, 25, 8, "tv", kRed, 2);
  draw_text(image, 1000, 1000, "far away", kRed, 1);
  draw_text(image, -1000, -1000, "far away", kRed, 1);
  const Changed c = changed_pixels(blank(30, 12), image);
  EXPECT_GT(c.count, 0);  // parts of the first two strings show
}

TEST(Draw, FontCoversTheLabelCharacters) {
  const std::string& chars = font_characters();
  std::string required = " .:%-_()/";
  for (char c = 'a'; c <= 'z'; ++c) required += c;
  for (char c = 'A'; c <= 'Z'; ++c) required += c;
  for (char c = '0'; c <= '9'; ++c) required += c;
  for (char c : required) EXPECT_NE(chars.find(c), std::string::npos) << "'" << c << "'";
  // Every COCO class name can be written without falling back to the box.
  for (const char* name : coco_class_names()) {
    for (const char* p = name; *p; ++p) {
      EXPECT_NE(chars.find(*p), std::string::npos) << name;
    }
  }
}

// A glyph's rows packed into one number, so glyphs compare as values.
uint64_t packed(const std::vector<uint8_t>& rows) {
  uint64_t bits = 0;
  for (uint8_t row : rows) bits = bits << kGlyphWidth | row;
  return bits;
}

TEST(Draw, GlyphsAreDistinctAndNonEmpty) {
  std::set<uint64_t> seen = {packed(glyph_rows('\x01'))};  // the box
  for (char c : font_characters()) {
    const std::vector<uint8_t> rows = glyph_rows(c);
    ASSERT_EQ(rows.size(), static_cast<size_t>(kGlyphHeight));
    int bits = 0;
    for (uint8_t row : rows) {
      EXPECT_LT(row, 1 << kGlyphWidth) << "'" << c << "' is wider than the cell";
      bits += __builtin_popcount(row);
    }
    if (c == ' ') {
      EXPECT_EQ(bits, 0);
    } else {
      EXPECT_GT(bits, 0) << "'" << c << "' is empty";
    }
    EXPECT_TRUE(seen.insert(packed(rows)).second)
        << "'" << c << "' looks like another glyph or the box";
  }
}

TEST(Draw, UnknownCharactersAreBoxes) {
  const std::vector<uint8_t> box = glyph_rows('~');
  EXPECT_EQ(glyph_rows('\x7f'), box);
  EXPECT_EQ(glyph_rows(static_cast<char>(0xC3)), box);  // a UTF-8 lead byte
  int bits = 0;
  for (uint8_t row : box) bits += __builtin_popcount(row);
  EXPECT_GT(bits, 0);

  Image image = blank(20, 20);
  draw_text(image, 0, 0, "~", kRed, 1);
  EXPECT_EQ(pixel(image, 0, 0), kRed);     // the box's corner
  EXPECT_EQ(pixel(image, 2, 2), Color{});  // its inside
}

TEST(Draw, DescendersUseTheLowRows) {
  auto low_bits = [](char c) {
    const auto rows = glyph_rows(c);
    return rows[kGlyphHeight - 2] | rows[kGlyphHeight - 1];
  };
  for (char c : std::string("gjpqy,")) EXPECT_NE(low_bits(c), 0) << "'" << c << "'";
  for (char c : std::string("aeoxAZ09")) EXPECT_EQ(low_bits(c), 0) << "'" << c << "'";
}

TEST(Draw, ClassColoursAreUltralyticsPalette) {
  EXPECT_EQ(class_color(0), (Color{0xFF, 0x38, 0x38}));
  EXPECT_EQ(class_color(11), (Color{0x00, 0xC2, 0xFF}));
  EXPECT_EQ(class_color(19), (Color{0xFF, 0x37, 0xC7}));
  EXPECT_EQ(class_color(20), class_color(0));
  EXPECT_EQ(class_color(62), class_color(2));
  EXPECT_EQ(class_color(-1), class_color(19));
}

TEST(Draw, TextColourContrastsWithTheBackground) {
  EXPECT_EQ(text_color_for({0x00, 0x18, 0xEC}), (Color{255, 255, 255}));  // dark blue
  EXPECT_EQ(text_color_for({0x52, 0x00, 0x85}), (Color{255, 255, 255}));  // purple
  EXPECT_EQ(text_color_for({0xFF, 0xB2, 0x1D}), (Color{0, 0, 0}));        // yellow
  EXPECT_EQ(text_color_for({0x48, 0xF9, 0x0A}), (Color{0, 0, 0}));        // green
}

TEST(Draw, SizesFollowTheImage) {
  EXPECT_EQ(box_line_width(blank(640, 480)), 2);
  EXPECT_EQ(box_line_width(blank(2000, 2000)), 6);
  EXPECT_EQ(box_line_width(blank(1, 1)), 2);
  EXPECT_EQ(label_scale(blank(640, 480)), 2);
  EXPECT_EQ(label_scale(blank(1280, 720)), 4);
  EXPECT_EQ(label_scale(blank(100, 100)), 1);
}

TEST(Draw, DetectionBoxAndLabelAbove) {
  const Image before = blank(640, 480);
  Image image = before;
  const Detection d{100.0f, 200.0f, 300.0f, 400.0f, 0.87f, 62};  // tv
  const std::vector<std::string> names(coco_class_names().begin(), coco_class_names().end());
  draw_detections(image, {d}, names);
  const Color orange = class_color(62);
  // A 2-pixel outline centred on the box edges: columns 99 and 100, rows 199 and 200.
  EXPECT_EQ(pixel(image, 99, 300), orange);
  EXPECT_EQ(pixel(image, 100, 300), orange);
  EXPECT_EQ(pixel(image, 101, 300), Color{});
  EXPECT_EQ(pixel(image, 98, 300), Color{});
  EXPECT_EQ(pixel(image, 300, 350), orange);
  EXPECT_EQ(pixel(image, 200, 400), orange);
  EXPECT_EQ(pixel(image, 200, 250), Color{});  // inside the box stays as it was
  // The label "tv 0.87" sits on the box's top edge, left-aligned with it, in the box colour
  // with text that contrasts with it.
  const int scale = label_scale(image);
  const int label_w = text_width("tv 0.87", scale) + 2 * scale;
  const int label_h = text_height(scale) + 2 * scale;
  const Changed c = changed_pixels(before, image);
  EXPECT_EQ(c.x1, 99);
  EXPECT_EQ(c.y1, 199 - label_h);
  EXPECT_EQ(c.x2, 301);
  EXPECT_EQ(c.y2, 401);
  const Color ink = text_color_for(orange);
  int ink_pixels = 0, background_pixels = 0;
  for (int y = 199 - label_h; y < 199; ++y) {
    for (int x = 99; x < 99 + label_w; ++x) {
      ink_pixels += pixel(image, x, y) == ink;
      background_pixels += pixel(image, x, y) == orange;
    }
  }
  EXPECT_GT(ink_pixels, 50);
  EXPECT_EQ(ink_pixels + background_pixels, label_w * label_h);
  EXPECT_EQ(pixel(image, 99 + label_w, 190), Color{});  // right of the label
}

TEST(Draw, LabelGoesInsideAtTheTopEdgeAndStaysInTheImage) {
  Image image = blank(320, 240);
  const Detection d{280.0f, 0.0f, 319.0f, 100.0f, 0.5f, 0};
  draw_detections(image, {d}, {"person"});
  const int scale = label_scale(image);
  const int label_w = text_width("person 0.50", scale) + 2 * scale;
  const int label_h = text_height(scale) + 2 * scale;
  // Wider than the room right of the box, so shifted left to end at the image's edge.
  EXPECT_EQ(pixel(image, 320 - label_w, 5), class_color(0));
  EXPECT_EQ(pixel(image, 320 - label_w - 1, 5), Color{});
  // No room above, so it starts at the top row, covering the box's top line.
  EXPECT_EQ(pixel(image, 300, 0), class_color(0));
  EXPECT_EQ(pixel(image, 300, label_h - 1), class_color(0));  // its bottom padding row
  EXPECT_EQ(pixel(image, 300, label_h), Color{});
}

TEST(Draw, UnnamedClassesAreLabelledByNumber) {
  Image named = blank(200, 100), numbered = blank(200, 100);
  const Detection d{20.0f, 50.0f, 150.0f, 90.0f, 0.9f, 3};
  draw_detections(named, {d}, {"a", "b", "c", "3"});
  draw_detections(numbered, {d}, {});
  EXPECT_EQ(named.pixels, numbered.pixels);  // "3 0.90" either way
}

TEST(Draw, TinyAndDegenerateInputsDoNotCrash) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Detection> detections = {{0, 0, 1, 1, 0.9f, 0},
                                             {-50, -50, 50, 50, 0.5f, 99},
                                             {nan, nan, nan, nan, nan, -7},
                                             {-inf, -inf, inf, inf, 1.0f, 5},
                                             {3e9f, 3e9f, -3e9f, -3e9f, 0.1f, 1}};
  for (auto [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {0, 0}, {2, 1}, {1, 40}, {7, 3}}) {
    Image image = blank(w, h);
    draw_detections(image, detections, {"person", "bicycle"});
    fill_rect(image, -1, -1, 2, 2, kRed);
    draw_text(image, 0, 0, "x", kRed, 4);
    EXPECT_EQ(image.pixels.size(), static_cast<size_t>(w) * h * 3);
  }
}

}  // namespace
}  // namespace qyolo
