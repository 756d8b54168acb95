// COCO instances and results JSON. Files are read with nlohmann's SAX interface straight into
// flat structs: an instances file is mostly segmentation polygons nobody here needs, and a
// results file of 500k detections would be a DOM of millions of small nodes.
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "qyolo/coco.h"

namespace qyolo {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::string_view, kCoco80Classes> kCoco80Names = {
    "person",        "bicycle",      "car",
    "motorcycle",    "airplane",     "bus",
    "train",         "truck",        "boat",
    "traffic light", "fire hydrant", "stop sign",
    "parking meter", "bench",        "bird",
    "cat",           "dog",          "horse",
    "sheep",         "cow",          "elephant",
    "bear",          "zebra",        "giraffe",
    "backpack",      "umbrella",     "handbag",
    "tie",           "suitcase",     "frisbee",
    "skis",          "snowboard",    "sports ball",
    "kite",          "baseball bat", "baseball glove",
    "skateboard",    "surfboard",    "tennis racket",
    "bottle",        "wine glass",   "cup",
    "fork",          "knife",        "spoon",
    "bowl",          "banana",       "apple",
    "sandwich",      "orange",       "broccoli",
    "carrot",        "hot dog",      "pizza",
    "donut",         "cake",         "chair",
    "couch",         "potted plant", "bed",
    "dining table",  "toilet",       "tv",
    "laptop",        "mouse",        "remote",
    "keyboard",      "cell phone",   "microwave",
    "oven",          "toaster",      "sink",
    "refrigerator",  "book",         "clock",
    "vase",          "scissors",     "teddy bear",
    "hair drier",    "toothbrush"};

Expected<std::string> read_whole_file(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) return io_error("cannot open ", path, ": ", std::strerror(errno));
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(file);
  const int error = errno;
  std::fclose(file);
  if (failed) return io_error("cannot read ", path, ": ", std::strerror(error));
  return text;
}

// nlohmann reports a syntax error as a count of bytes read; people want line and column.
std::string line_column(const std::string& text, size_t position) {
  const size_t end = std::min(position > 0 ? position - 1 : 0, text.size());
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return str_cat("line ", line, ", column ", position - line_start);
}

// The part of nlohmann's message after its own "[json.exception...] parse error at ...: ",
// cut short: its "last read" can quote a long run of the file.
std::string syntax_message(const std::string& what) {
  constexpr size_t kMaxLength = 240;
  std::string message = what;
  const size_t column = what.find("column ");
  const size_t colon = column == std::string::npos ? column : what.find(": ", column);
  if (colon != std::string::npos) {
    message = what.substr(colon + 2);
  } else if (const size_t bracket = what.find("] "); bracket != std::string::npos) {
    message = what.substr(bracket + 2);
  }
  if (message.size() > kMaxLength) message = message.substr(0, kMaxLength) + "...";
  return message;
}

enum class FileKind { kInstances, kResults };
enum class Section { kNone, kImages, kAnnotations, kCategories, kResults };
enum class Field {
  kOther,
  kId,
  kImageId,
  kCategoryId,
  kBbox,
  kArea,
  kIscrowd,
  kScore,
  kFileName,
  kWidth,
  kHeight,
  kName
};

constexpr uint32_t bit(Field field) { return 1u << static_cast<int>(field); }

const char* section_name(Section section) {
  constexpr const char* kNames[] = {"", "images", "annotations", "categories", "results"};
  return kNames[static_cast<int>(section)];
}

const char* field_name(Field field) {
  constexpr const char* kNames[] = {"",          "id",    "image_id", "category_id",
                                    "bbox",      "area",  "iscrowd",  "score",
                                    "file_name", "width", "height",   "name"};
  return kNames[static_cast<int>(field)];
}

// The fields a section reads, and the ones pycocotools cannot do without.
Field lookup_field(Section section, const std::string& key) {
  constexpr std::array<Field, 11> kAll = {Field::kId,     Field::kImageId,  Field::kCategoryId,
                                          Field::kBbox,   Field::kArea,     Field::kIscrowd,
                                          Field::kScore,  Field::kFileName, Field::kWidth,
                                          Field::kHeight, Field::kName};
  uint32_t wanted = 0;
  switch (section) {
    case Section::kImages:
      wanted = bit(Field::kId) | bit(Field::kFileName) | bit(Field::kWidth) | bit(Field::kHeight);
      break;
    case Section::kCategories:
      wanted = bit(Field::kId) | bit(Field::kName);
      break;
    case Section::kAnnotations:
      wanted = bit(Field::kId) | bit(Field::kImageId) | bit(Field::kCategoryId) |
               bit(Field::kBbox) | bit(Field::kArea) | bit(Field::kIscrowd);
      break;
    case Section::kResults:
      wanted =
          bit(Field::kImageId) | bit(Field::kCategoryId) | bit(Field::kBbox) | bit(Field::kScore);
      break;
    case Section::kNone:
      break;
  }
  for (Field field : kAll) {
    if ((wanted & bit(field)) && key == field_name(field)) return field;
  }
  return Field::kOther;
}

uint32_t required_fields(Section section) {
  switch (section) {
    case Section::kImages:
    case Section::kCategories:
      return bit(Field::kId);
    case Section::kAnnotations:
      return bit(Field::kId) | bit(Field::kImageId) | bit(Field::kCategoryId) | bit(Field::kBbox) |
             bit(Field::kArea) | bit(Field::kIscrowd);
    case Section::kResults:
      return bit(Field::kImageId) | bit(Field::kCategoryId) | bit(Field::kBbox) |
             bit(Field::kScore);
    case Section::kNone:
      break;
  }
  return 0;
}

// Fields qyolo keeps for convenience but pycocotools never reads: a value of another type is
// skipped rather than refused.
bool is_optional_field(Field field) {
  return field == Field::kFileName || field == Field::kName || field == Field::kWidth ||
         field == Field::kHeight;
}

bool is_integer_field(Field field) {
  return field == Field::kId || field == Field::kImageId || field == Field::kCategoryId ||
         field == Field::kIscrowd || field == Field::kWidth || field == Field::kHeight;
}

// One JSON object of a section, as it is being read.
struct Record {
  uint32_t seen = 0;
  int64_t id = 0, image_id = 0, category_id = 0, width = 0, height = 0, iscrowd = 0;
  double area = 0, score = 0;
  std::array<double, 4> bbox{};
  int bbox_count = 0;
  std::string file_name, name;
};

// Depth bookkeeping: `depth_` counts the open containers. An instances file holds its
// records at depth 3 ({ "annotations": [ { here } ] }), a results file at depth 2 ([ { } ]).
class CocoSaxReader final : public nlohmann::json_sax<Json> {
 public:
  CocoSaxReader(FileKind kind, const std::string& text) : kind_(kind), text_(text) {}

  Status status;
  CocoDataset dataset;  // a results file's detections go to `annotations`
  uint32_t sections_seen = 0;

  bool null() override { return value_error("null"); }
  bool boolean(bool value) override {
    if (!at_field_value()) return scalar_elsewhere("a boolean");
    if (field_ == Field::kIscrowd) return set_integer(value ? 1 : 0);
    return value_error("a boolean");
  }
  bool number_integer(number_integer_t value) override { return number(value, value, true); }
  bool number_unsigned(number_unsigned_t value) override {
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return number(0, static_cast<double>(value), false);
    }
    return number(static_cast<int64_t>(value), static_cast<double>(value), true);
  }
  bool number_float(number_float_t value, const string_t&) override {
    // pycocotools compares ids with ==, so 7.0 is the id 7.
    const bool integral = std::trunc(value) == value && std::fabs(value) < 9.0e18;
    return number(integral ? static_cast<int64_t>(value) : 0, value, integral);
  }
  bool string(string_t& value) override {
    if (!at_field_value()) return scalar_elsewhere("a string");
    if (field_ == Field::kFileName) {
      record_.file_name = value;
    } else if (field_ == Field::kName) {
      record_.name = value;
    } else {
      return value_error("a string");
    }
    record_.seen |= bit(field_);
    return true;
  }
  bool binary(binary_t&) override { return value_error("binary data"); }

  bool start_object(std::size_t) override {
    if (depth_ == 0 && kind_ == FileKind::kResults) {
      return fail("expected a JSON array of detections, found an object");
    }
    if (root_section_value()) return section_not_array();
    if (at_element()) {
      ++index_;
      record_ = Record{};
    } else if (at_field_value() && field_ != Field::kOther) {
      return value_error("an object");
    }
    ++depth_;
    return true;
  }
  bool end_object() override {
    --depth_;
    if (at_element()) return finish_record();
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 0) {
      if (kind_ == FileKind::kInstances) {
        return fail(
            "expected a JSON object with 'images', 'annotations' and 'categories', "
            "found an array");
      }
      enter_section(Section::kResults);
    } else if (depth_ == 1 && kind_ == FileKind::kInstances) {
      enter_section(root_section_);
    } else if (at_element()) {
      ++index_;
      return fail(str_cat(where(), ": expected an object, found an array"));
    } else if (at_field_value() && field_ == Field::kBbox) {
      in_bbox_ = true;
      record_.bbox_count = 0;
    } else if (at_field_value() && field_ != Field::kOther) {
      return value_error("an array");
    }
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (in_bbox_ && depth_ == record_depth()) {
      in_bbox_ = false;
      if (record_.bbox_count != 4) {
        return fail(str_cat(where(), ".bbox: expected 4 numbers [x, y, width, height], found ",
                            record_.bbox_count));
      }
      record_.seen |= bit(Field::kBbox);
    } else if (section_ != Section::kNone && depth_ == record_depth() - 2) {
      section_ = Section::kNone;
    }
    return true;
  }
  bool key(string_t& value) override {
    if (depth_ == 1 && kind_ == FileKind::kInstances) {
      root_section_ = value == "images"        ? Section::kImages
                      : value == "annotations" ? Section::kAnnotations
                      : value == "categories"  ? Section::kCategories
                                               : Section::kNone;
    } else if (section_ != Section::kNone && depth_ == record_depth()) {
      field_ = lookup_field(section_, value);
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) override {
    if (status.is_ok()) {
      status = invalid_argument("invalid JSON at ", line_column(text_, position), ": ",
                                syntax_message(error.what()));
    }
    return false;
  }

 private:
  int record_depth() const { return kind_ == FileKind::kInstances ? 3 : 2; }
  bool at_element() const { return section_ != Section::kNone && depth_ == record_depth() - 1; }
  bool at_field_value() const {
    return section_ != Section::kNone && depth_ == record_depth() && !in_bbox_;
  }
  bool in_bbox_value() const { return in_bbox_ && depth_ == record_depth() + 1; }
  // A value of "images", "annotations" or "categories" at the top of an instances file.
  bool root_section_value() const {
    return kind_ == FileKind::kInstances && depth_ == 1 && root_section_ != Section::kNone;
  }

  void enter_section(Section section) {
    section_ = section;
    index_ = -1;
    if (section != Section::kNone) sections_seen |= 1u << static_cast<int>(section);
  }

  std::string where() const { return str_cat(section_name(section_), "[", index_, "]"); }

  bool fail(const std::string& message) {
    if (status.is_ok()) status = invalid_argument(message);
    return false;
  }
  bool section_not_array() {
    return fail(str_cat("'", section_name(root_section_), "' must be an array"));
  }
  // A scalar where a record or the root was expected.
  bool scalar_elsewhere(const char* found) {
    if (depth_ == 0) {
      return fail(str_cat("expected a JSON ",
                          kind_ == FileKind::kInstances ? "object" : "array of detections",
                          ", found ", found));
    }
    if (root_section_value()) return section_not_array();
    if (at_element()) {
      ++index_;
      return fail(str_cat(where(), ": expected an object, found ", found));
    }
    if (in_bbox_value()) return fail(str_cat(where(), ".bbox: expected numbers, found ", found));
    return true;  // somewhere this reader does not look
  }
  bool value_error(const char* found) {
    if (!at_field_value()) return scalar_elsewhere(found);
    if (field_ == Field::kOther || is_optional_field(field_)) return true;
    const char* expected = is_integer_field(field_) ? "an integer"
                           : field_ == Field::kBbox ? "an array [x, y, width, height]"
                           : field_ == Field::kFileName || field_ == Field::kName ? "a string"
                                                                                  : "a number";
    return fail(
        str_cat(where(), ".", field_name(field_), ": expected ", expected, ", found ", found));
  }

  bool number(int64_t as_integer, double as_double, bool integral) {
    if (in_bbox_value()) {
      if (record_.bbox_count >= 4) {
        return fail(str_cat(where(), ".bbox: expected 4 numbers [x, y, width, height]"));
      }
      record_.bbox[record_.bbox_count++] = as_double;
      return true;
    }
    if (!at_field_value()) return scalar_elsewhere("a number");
    switch (field_) {
      case Field::kArea:
        record_.area = as_double;
        break;
      case Field::kScore:
        record_.score = as_double;
        break;
      case Field::kOther:
        return true;
      default:
        if (!is_integer_field(field_)) return value_error("a number");
        if (!integral) return value_error("a non-integer number");
        return set_integer(as_integer);
    }
    record_.seen |= bit(field_);
    return true;
  }

  bool set_integer(int64_t value) {
    switch (field_) {
      case Field::kId:
        record_.id = value;
        break;
      case Field::kImageId:
        record_.image_id = value;
        break;
      case Field::kCategoryId:
        record_.category_id = value;
        break;
      case Field::kIscrowd:
        record_.iscrowd = value;
        break;
      case Field::kWidth:
        record_.width = value;
        break;
      case Field::kHeight:
        record_.height = value;
        break;
      default:
        return true;
    }
    record_.seen |= bit(field_);
    return true;
  }

  bool finish_record() {
    const uint32_t missing = required_fields(section_) & ~record_.seen;
    if (missing) {
      for (int f = 0; f < 32; ++f) {
        if (missing & (1u << f)) {
          return fail(str_cat(where(), ": missing '", field_name(static_cast<Field>(f)), "'"));
        }
      }
    }
    switch (section_) {
      case Section::kImages:
        dataset.images.push_back(
            {record_.id, std::move(record_.file_name), record_.width, record_.height});
        break;
      case Section::kCategories:
        dataset.categories.push_back({record_.id, std::move(record_.name)});
        break;
      case Section::kAnnotations:
      case Section::kResults: {
        CocoAnnotation annotation;
        annotation.id = record_.id;
        annotation.image_id = record_.image_id;
        annotation.category_id = record_.category_id;
        annotation.bbox = record_.bbox;
        annotation.area = record_.area;
        annotation.iscrowd = record_.iscrowd;
        annotation.score = record_.score;
        dataset.annotations.push_back(annotation);
        break;
      }
      case Section::kNone:
        break;
    }
    return true;
  }

  FileKind kind_;
  const std::string& text_;
  int depth_ = 0;
  Section root_section_ = Section::kNone;  // the section named by the last top-level key
  Section section_ = Section::kNone;       // the section array being read, if any
  int64_t index_ = -1;                     // its current element
  Field field_ = Field::kOther;            // the key just read inside a record
  bool in_bbox_ = false;
  Record record_;
};

// A strict JSON reader for the common case that drives the same handler as nlohmann's
// sax_parse, several times faster (no per-character virtual input adapter, from_chars for
// numbers). It gives up on anything unusual or malformed — \u escapes, non-ASCII text, a
// byte-order mark, numbers out of range, syntax errors — and the caller then reads the file
// again with nlohmann, whose errors carry the position and the reason.
enum class FastParse { kDone, kStopped, kGaveUp };

// Reads a string at `p` (on its opening quote) into `out`.
bool fast_string(const char*& p, const char* end, std::string& out) {
  ++p;
  out.clear();
  const char* run = p;
  while (p < end) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"') {
      out.append(run, p);
      ++p;
      return true;
    }
    if (c == '\\') {
      out.append(run, p);
      if (++p >= end) return false;
      switch (*p++) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        default:
          return false;
      }
      run = p;
      continue;
    }
    if (c < 0x20 || c >= 0x80) return false;
    ++p;
  }
  return false;
}

// Reads a number at `p` as nlohmann classifies it: negative integers as number_integer,
// other integers as number_unsigned, anything with a fraction or exponent as number_float.
FastParse fast_number(const char*& p, const char* end, CocoSaxReader& handler) {
  static const std::string kNoText;
  const char* start = p;
  const auto digits = [&] {
    const char* first = p;
    while (p < end && *p >= '0' && *p <= '9') ++p;
    return p > first;
  };
  if (*p == '-') ++p;
  if (p < end && *p == '0') {
    ++p;
  } else if (!digits()) {
    return FastParse::kGaveUp;
  }
  bool is_float = false;
  if (p < end && *p == '.') {
    ++p;
    if (!digits()) return FastParse::kGaveUp;
    is_float = true;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < end && (*p == '+' || *p == '-')) ++p;
    if (!digits()) return FastParse::kGaveUp;
    is_float = true;
  }
  bool accepted;
  if (is_float) {
    double value;
    const auto result = std::from_chars(start, p, value);
    if (result.ec != std::errc() || result.ptr != p) return FastParse::kGaveUp;
    accepted = handler.number_float(value, kNoText);
  } else if (*start == '-') {
    int64_t value;
    const auto result = std::from_chars(start, p, value);
    if (result.ec != std::errc() || result.ptr != p) return FastParse::kGaveUp;
    accepted = handler.number_integer(value);
  } else {
    uint64_t value;
    const auto result = std::from_chars(start, p, value);
    if (result.ec != std::errc() || result.ptr != p) return FastParse::kGaveUp;
    accepted = handler.number_unsigned(value);
  }
  return accepted ? FastParse::kDone : FastParse::kStopped;
}

FastParse fast_sax_parse(const std::string& text, CocoSaxReader& handler) {
  const char* p = text.data();
  const char* const end = p + text.size();
  constexpr std::size_t kUnknownSize = static_cast<std::size_t>(-1);
  std::vector<char> open;  // '{' or '[' per open container
  std::string buffer;
  const auto skip_space = [&] {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  };
  const auto literal = [&](const char* word, size_t length) {
    if (static_cast<size_t>(end - p) < length || std::memcmp(p, word, length) != 0) return false;
    p += length;
    return true;
  };
  enum class Expect { kValue, kKey, kAfterValue } expect = Expect::kValue;
  while (true) {
    skip_space();
    if (expect == Expect::kAfterValue) {
      if (open.empty()) return p == end ? FastParse::kDone : FastParse::kGaveUp;
      if (p >= end) return FastParse::kGaveUp;
      const char c = *p++;
      if (c == ',') {
        expect = open.back() == '{' ? Expect::kKey : Expect::kValue;
      } else if (c == '}' && open.back() == '{') {
        open.pop_back();
        if (!handler.end_object()) return FastParse::kStopped;
      } else if (c == ']' && open.back() == '[') {
        open.pop_back();
        if (!handler.end_array()) return FastParse::kStopped;
      } else {
        return FastParse::kGaveUp;
      }
      continue;
    }
    if (p >= end) return FastParse::kGaveUp;
    if (expect == Expect::kKey) {
      if (*p != '"' || !fast_string(p, end, buffer)) return FastParse::kGaveUp;
      if (!handler.key(buffer)) return FastParse::kStopped;
      skip_space();
      if (p >= end || *p != ':') return FastParse::kGaveUp;
      ++p;
      expect = Expect::kValue;
      continue;
    }
    const char c = *p;
    bool accepted = true;
    expect = Expect::kAfterValue;
    if (c == '{' || c == '[') {
      ++p;
      accepted = c == '{' ? handler.start_object(kUnknownSize) : handler.start_array(kUnknownSize);
      open.push_back(c);
      skip_space();
      if (p < end && *p == (c == '{' ? '}' : ']')) {
        ++p;
        open.pop_back();
        accepted = accepted && (c == '{' ? handler.end_object() : handler.end_array());
      } else {
        expect = c == '{' ? Expect::kKey : Expect::kValue;
      }
    } else if (c == '"') {
      if (!fast_string(p, end, buffer)) return FastParse::kGaveUp;
      accepted = handler.string(buffer);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const FastParse number = fast_number(p, end, handler);
      if (number != FastParse::kDone) return number;
    } else if (literal("true", 4)) {
      accepted = handler.boolean(true);
    } else if (literal("false", 5)) {
      accepted = handler.boolean(false);
    } else if (literal("null", 4)) {
      accepted = handler.null();
    } else {
      return FastParse::kGaveUp;
    }
    if (!accepted) return FastParse::kStopped;
  }
}

Expected<CocoDataset> parse_coco_file(const std::string& path, FileKind kind) {
  QYOLO_ASSIGN_OR_RETURN(std::string text, read_whole_file(path));
  auto reader = std::make_unique<CocoSaxReader>(kind, text);
  bool parsed = false;
  try {
    const FastParse fast = fast_sax_parse(text, *reader);
    parsed = fast == FastParse::kDone;
    if (fast == FastParse::kGaveUp) {
      reader = std::make_unique<CocoSaxReader>(kind, text);
      parsed = Json::sax_parse(text, reader.get());
    }
  } catch (const std::exception& error) {  // nlohmann reports errors through the handler;
    return with_context(internal_error(error.what()), path);  // this is only bad_alloc & co.
  }
  if (!parsed || !reader->status.is_ok()) {
    return with_context(reader->status.is_ok() ? invalid_argument("invalid JSON") : reader->status,
                        path);
  }
  if (kind == FileKind::kInstances) {
    for (Section section : {Section::kImages, Section::kAnnotations, Section::kCategories}) {
      if (!(reader->sections_seen & (1u << static_cast<int>(section)))) {
        return invalid_argument(path, ": no '", section_name(section),
                                "' array: expected a COCO instances file");
      }
    }
  }
  return std::move(reader->dataset);
}

// Python's round(x, digits), then the shortest text that reads back as that double.
void append_rounded(std::string& out, double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  const double rounded = std::strtod(buffer, nullptr);
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), rounded);
  std::string_view text(buffer, result.ptr - buffer);
  out += text;
  // Python writes 5.0, not 5: keep the value a float for readers that care.
  if (text.find_first_of(".en") == std::string_view::npos) out += ".0";
}

}  // namespace

void CocoDataset::build_index() {
  image_index_.clear();
  category_index_.clear();
  for (size_t i = 0; i < images.size(); ++i) image_index_[images[i].id] = i;
  for (size_t i = 0; i < categories.size(); ++i) category_index_[categories[i].id] = i;
}

const CocoImage* CocoDataset::find_image(int64_t id) const {
  const auto it = image_index_.find(id);
  return it == image_index_.end() ? nullptr : &images[it->second];
}

const CocoCategory* CocoDataset::find_category(int64_t id) const {
  const auto it = category_index_.find(id);
  return it == category_index_.end() ? nullptr : &categories[it->second];
}

Expected<CocoDataset> load_coco_annotations(const std::string& path) {
  QYOLO_ASSIGN_OR_RETURN(CocoDataset dataset, parse_coco_file(path, FileKind::kInstances));
  dataset.build_index();
  return dataset;
}

Expected<std::vector<CocoAnnotation>> load_coco_results(const std::string& path,
                                                        const CocoDataset& ground_truth) {
  QYOLO_ASSIGN_OR_RETURN(CocoDataset parsed, parse_coco_file(path, FileKind::kResults));
  std::vector<CocoAnnotation> detections = std::move(parsed.annotations);
  for (size_t i = 0; i < detections.size(); ++i) {
    CocoAnnotation& detection = detections[i];
    if (!ground_truth.find_image(detection.image_id)) {
      return invalid_argument(path, ": results[", i, "]: image_id ", detection.image_id,
                              " is not an image of the ground truth");
    }
    // What COCO.loadRes sets for box results.
    detection.id = static_cast<int64_t>(i) + 1;
    detection.area = detection.bbox[2] * detection.bbox[3];
    detection.iscrowd = 0;
  }
  return detections;
}

Status write_coco_results(const std::string& path, const std::vector<CocoAnnotation>& detections) {
  std::string out = "[";
  out.reserve(detections.size() * 100 + 4);
  for (size_t i = 0; i < detections.size(); ++i) {
    const CocoAnnotation& d = detections[i];
    if (!std::isfinite(d.score) ||
        !std::all_of(d.bbox.begin(), d.bbox.end(), [](double v) { return std::isfinite(v); })) {
      return invalid_argument(path, ": detection ", i, " has a non-finite box or score");
    }
    out += i ? ",\n{\"image_id\": " : "\n{\"image_id\": ";
    out += std::to_string(d.image_id);
    out += ", \"category_id\": ";
    out += std::to_string(d.category_id);
    out += ", \"bbox\": [";
    for (int j = 0; j < 4; ++j) {
      if (j) out += ", ";
      append_rounded(out, d.bbox[j], 3);
    }
    out += "], \"score\": ";
    append_rounded(out, d.score, 5);
    out += "}";
  }
  out += "\n]\n";
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return io_error("cannot write ", path, ": ", std::strerror(errno));
  const bool written = std::fwrite(out.data(), 1, out.size(), file) == out.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) return io_error("cannot write ", path, ": ", std::strerror(errno));
  return Status::ok();
}

std::string_view coco80_name(int class_index) {
  if (class_index < 0 || class_index >= kCoco80Classes) return {};
  return kCoco80Names[class_index];
}

}  // namespace qyolo
