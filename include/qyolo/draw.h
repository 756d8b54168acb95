// Drawing detections onto images so people can look at what the model sees: rectangles,
// text in a small built-in bitmap font, and labelled boxes in ultralytics' class colours.
// Everything clips to the image, so any coordinates are safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qyolo/vision.h"

namespace qyolo {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Color&) const = default;
};

// ultralytics' 20-colour palette, indexed by class id modulo 20 (negative ids wrap too).
Color class_color(int class_id);
// Black or white, whichever contrasts more with `background` (WCAG contrast ratio).
Color text_color_for(Color background);

// Fills the half-open rectangle [x1, x2) x [y1, y2), clipped to the image.
void fill_rect(Image& image, int x1, int y1, int x2, int y2, Color color);
// Outlines [x1, x2) x [y1, y2): the outer `line_width` pixels of it, clipped to the image.
void draw_rect(Image& image, int x1, int y1, int x2, int y2, Color color, int line_width);

// The font: 5 x 9 cells (7 rows above the baseline, 2 for descenders), one blank column
// between characters, each pixel drawn as a `scale` x `scale` square.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 9;
inline constexpr int kGlyphAdvance = 6;

// The characters the font draws; any other character is drawn as a box.
const std::string& font_characters();
// The glyph of `c` as kGlyphHeight rows of kGlyphWidth bits, bit 4 the leftmost pixel.
// Unknown characters give the box glyph.
std::vector<uint8_t> glyph_rows(char c);

// Size in pixels of `text` drawn at `scale` (no trailing gap after the last character).
int text_width(const std::string& text, int scale);
int text_height(int scale);
// Draws `text` with its cell's top-left corner at (x, y); the background is left alone.
void draw_text(Image& image, int x, int y, const std::string& text, Color color, int scale);

// ultralytics' box line width for an image: max(round(0.003 * (w + h) / 2), 2).
int box_line_width(const Image& image);
// The font scale for labels: one font pixel per 320 pixels of the long side, at least 1.
int label_scale(const Image& image);

// Draws each detection as a box in its class colour with a "name 0.87" label on a filled
// background above the box (inside it when there is no room above). Boxes are drawn first and
// labels last, the highest score on top. Class ids without a name are labelled by number.
void draw_detections(Image& image, const std::vector<Detection>& detections,
                     const std::vector<std::string>& class_names);

}  // namespace qyolo
