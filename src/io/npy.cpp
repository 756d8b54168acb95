// NumPy .npy files: format versions 1.0-3.0, little-endian, C order, the dtypes Tensor holds.
// The header is a Python dict literal, so it is read with a small literal parser rather than
// by pattern matching: numpy's writers, old and new, differ in spacing, order and commas.
#include "qyolo/npy.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

namespace qyolo {
namespace {

// Data bytes are copied without swapping, which is only right on a little-endian host.
static_assert(std::endian::native == std::endian::little, "npy.cpp assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// numpy aligns the data to 64 bytes so that files can be memory-mapped for any dtype.
constexpr size_t kDataAlign = 64;
// numpy pads the header so it can be rewritten in place when the array grows along axis 0;
// doing the same keeps our files byte-identical to np.save's.
constexpr size_t kGrowthAxisDigits = 21;
constexpr int kMaxNesting = 32;

struct DTypeCode {
  DType dtype;
  char kind;  // numpy's kind letter: f, i, u, b
  size_t size;
  const char* descr;  // what numpy writes
};

constexpr DTypeCode kDTypeCodes[] = {
    {DType::kFloat32, 'f', 4, "<f4"}, {DType::kFloat64, 'f', 8, "<f8"},
    {DType::kFloat16, 'f', 2, "<f2"}, {DType::kInt8, 'i', 1, "|i1"},
    {DType::kUInt8, 'u', 1, "|u1"},   {DType::kInt32, 'i', 4, "<i4"},
    {DType::kInt64, 'i', 8, "<i8"},   {DType::kBool, 'b', 1, "|b1"},
};

std::string supported_descrs() {
  std::string out;
  for (const DTypeCode& code : kDTypeCodes) {
    if (!out.empty()) out += ", ";
    out += str_cat("'", code.descr, "'");
  }
  return out;
}

// Quotes header text for a one-line message: escapes control bytes and cuts long text.
std::string quoted(std::string_view text, size_t max_chars = 120) {
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < max_chars; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max_chars) out += "...";
  return out + "'";
}

// Formats a shape as Python's repr of a tuple: (), (3,), (1, 3).
std::string python_shape(const Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  return out + ")";
}

// ---- A Python literal, as far as .npy headers use them ----

struct PyValue {
  enum class Kind { kNone, kBool, kInt, kString, kTuple, kList, kDict };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  std::string text;
  std::vector<PyValue> items;  // tuple and list elements; dict keys and values alternate
};

const char* kind_name(PyValue::Kind kind) {
  switch (kind) {
    case PyValue::Kind::kNone:
      return "None";
    case PyValue::Kind::kBool:
      return "a bool";
    case PyValue::Kind::kInt:
      return "an int";
    case PyValue::Kind::kString:
      return "a string";
    case PyValue::Kind::kTuple:
      return "a tuple";
    case PyValue::Kind::kList:
      return "a list";
    case PyValue::Kind::kDict:
      return "a dict";
  }
  return "?";
}

class LiteralParser {
 public:
  explicit LiteralParser(std::string_view text) : text_(text) {}

  Expected<PyValue> parse() {
    QYOLO_ASSIGN_OR_RETURN(PyValue value, parse_value(0));
    skip_space();
    if (pos_ != text_.size()) return error("end of header");
    return value;
  }

 private:
  Status error(std::string_view expected) const {
    return invalid_argument("malformed header: expected ", expected, " at column ", pos_, " of ",
                            quoted(text_));
  }

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  bool at_digit() const { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; }

  Expected<PyValue> parse_value(int depth) {
    if (depth > kMaxNesting) {
      return invalid_argument("malformed header: nested deeper than ", kMaxNesting,
                              " levels at column ", pos_, " of ", quoted(text_));
    }
    skip_space();
    if (pos_ >= text_.size()) return error("a value");
    const char c = text_[pos_];
    if (c == '{') return parse_dict(depth);
    if (c == '(') return parse_tuple(depth);
    if (c == '[') {
      ++pos_;
      PyValue list;
      list.kind = PyValue::Kind::kList;
      return parse_items(depth, ']', std::move(list));
    }
    if (c == '\'' || c == '"') return parse_string();
    // Python 2 era writers may have used u'...' strings.
    if ((c == 'u' || c == 'U') && pos_ + 1 < text_.size() &&
        (text_[pos_ + 1] == '\'' || text_[pos_ + 1] == '"')) {
      ++pos_;
      return parse_string();
    }
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_int();
    return parse_name();
  }

  Expected<PyValue> parse_dict(int depth) {
    PyValue dict;
    dict.kind = PyValue::Kind::kDict;
    ++pos_;
    skip_space();
    while (!at('}')) {
      QYOLO_ASSIGN_OR_RETURN(PyValue key, parse_value(depth + 1));
      skip_space();
      if (!at(':')) return error("':'");
      ++pos_;
      QYOLO_ASSIGN_OR_RETURN(PyValue value, parse_value(depth + 1));
      dict.items.push_back(std::move(key));
      dict.items.push_back(std::move(value));
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at('}')) {
        return error("',' or '}'");
      }
    }
    ++pos_;
    return dict;
  }

  // "(x)" is a parenthesised value, "(x,)" a tuple, as in Python.
  Expected<PyValue> parse_tuple(int depth) {
    ++pos_;
    skip_space();
    PyValue tuple;
    tuple.kind = PyValue::Kind::kTuple;
    if (at(')')) {
      ++pos_;
      return tuple;
    }
    QYOLO_ASSIGN_OR_RETURN(PyValue first, parse_value(depth + 1));
    skip_space();
    if (at(')')) {
      ++pos_;
      return first;
    }
    if (!at(',')) return error("',' or ')'");
    ++pos_;
    tuple.items.push_back(std::move(first));
    return parse_items(depth, ')', std::move(tuple));
  }

  // Parses the rest of a sequence, "b, c)", after its opening or a comma; a trailing comma
  // is allowed.
  Expected<PyValue> parse_items(int depth, char close, PyValue sequence) {
    skip_space();
    while (!at(close)) {
      QYOLO_ASSIGN_OR_RETURN(PyValue item, parse_value(depth + 1));
      sequence.items.push_back(std::move(item));
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at(close)) {
        return error(close == ')' ? "',' or ')'" : "',' or ']'");
      }
    }
    ++pos_;
    return sequence;
  }

  Expected<PyValue> parse_string() {
    const char quote = text_[pos_++];
    PyValue value;
    value.kind = PyValue::Kind::kString;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      char c = text_[pos_++];
      if (c == '\\' && pos_ < text_.size()) {
        c = text_[pos_++];
        if (c == 'n') c = '\n';
        if (c == 't') c = '\t';
      }
      value.text += c;
    }
    if (pos_ >= text_.size()) return error(str_cat("a closing ", quote));
    ++pos_;
    return value;
  }

  Expected<PyValue> parse_int() {
    const size_t start = pos_;
    const bool negative = at('-');
    if (at('-') || at('+')) ++pos_;
    if (!at_digit()) return error("a digit");
    // Accumulate as a negative number so that INT64_MIN fits too.
    int64_t value = 0;
    for (; at_digit(); ++pos_) {
      const int digit = text_[pos_] - '0';
      if (value < (std::numeric_limits<int64_t>::min() + digit) / 10) {
        pos_ = start;
        return error("an integer that fits in 64 bits");
      }
      value = value * 10 - digit;
    }
    if (!negative) {
      if (value == std::numeric_limits<int64_t>::min()) {
        pos_ = start;
        return error("an integer that fits in 64 bits");
      }
      value = -value;
    }
    // Python 2 wrote long integers as "3L"; numpy still reads them.
    if (at('L') || at('l')) ++pos_;
    PyValue result;
    result.kind = PyValue::Kind::kInt;
    result.integer = value;
    return result;
  }

  Expected<PyValue> parse_name() {
    const size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
      ++pos_;
    }
    const std::string_view name = text_.substr(start, pos_ - start);
    PyValue value;
    if (name == "True" || name == "False") {
      value.kind = PyValue::Kind::kBool;
      value.boolean = name == "True";
      return value;
    }
    if (name == "None") return value;
    pos_ = start;
    return error("a dict, tuple, string, int, True, False or None");
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// ---- Header ----

struct Prefix {
  int major = 0;
  int minor = 0;
  size_t dict_offset = 0;  // where the header dict starts
  size_t dict_size = 0;
};

struct NpyHeader {
  DType dtype = DType::kUndefined;
  Shape shape;
  size_t data_offset = 0;
  size_t data_bytes = 0;
};

// Magic, version and header length: the first 10 (1.0) or 12 (2.0, 3.0) bytes.
Expected<Prefix> parse_prefix(std::string_view bytes) {
  if (bytes.empty()) return invalid_argument("empty file, expected a .npy header");
  const size_t compared = std::min(bytes.size(), kMagicSize);
  if (bytes.substr(0, compared) != std::string_view(kMagic, compared)) {
    return invalid_argument("not a .npy file (bad magic: expected '\\x93NUMPY', found ",
                            quoted(bytes.substr(0, kMagicSize)), ")");
  }
  if (bytes.size() < kMagicSize + 2) {
    return invalid_argument("truncated header: expected at least 10 bytes, found ", bytes.size());
  }
  Prefix prefix;
  prefix.major = static_cast<unsigned char>(bytes[6]);
  prefix.minor = static_cast<unsigned char>(bytes[7]);
  size_t length_bytes = 0;
  if (prefix.major == 1 && prefix.minor == 0) {
    length_bytes = 2;
  } else if ((prefix.major == 2 || prefix.major == 3) && prefix.minor == 0) {
    length_bytes = 4;
  } else {
    return unsupported("unsupported .npy format version ", prefix.major, ".", prefix.minor,
                       " (supported: 1.0, 2.0, 3.0)");
  }
  prefix.dict_offset = kMagicSize + 2 + length_bytes;
  if (bytes.size() < prefix.dict_offset) {
    return invalid_argument("truncated header: expected at least ", prefix.dict_offset,
                            " bytes for format ", prefix.major, ".0, found ", bytes.size());
  }
  for (size_t i = 0; i < length_bytes; ++i) {
    prefix.dict_size |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  }
  return prefix;
}

// The dtype a descr string names, or why it cannot be read.
Expected<DType> parse_descr(const std::string& descr) {
  std::string_view rest = descr;
  char byte_order = '|';
  if (!rest.empty() && rest[0] != '\0' && std::strchr("<>|=", rest[0])) {
    byte_order = rest[0];
    rest.remove_prefix(1);
  }
  if (!rest.empty() && rest[0] == 'O') {
    return unsupported("object array (descr ", quoted(descr),
                       ", pickled Python objects) not supported: save a numeric array, e.g. "
                       "dtype '<f4', with allow_pickle=False");
  }
  if (rest.size() >= 2 && rest.size() <= 3) {
    const char kind = rest[0];
    size_t size = 0;
    bool digits = true;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') digits = false;
      size = size * 10 + static_cast<size_t>(c - '0');
    }
    for (const DTypeCode& code : kDTypeCodes) {
      if (!digits || code.kind != kind || code.size != size) continue;
      // Byte order means nothing for one-byte types, so '>i1' is as good as '|i1'.
      if (byte_order == '>' && size > 1) {
        return unsupported("big-endian ", quoted(descr), " not supported: save with dtype '<", rest,
                           "'");
      }
      return code.dtype;
    }
  }
  return unsupported("unsupported dtype ", quoted(descr), " (supported: ", supported_descrs(), ")");
}

// Checks the header dict and works out dtype, shape and data size.
Expected<NpyHeader> interpret_header(std::string_view dict_text) {
  QYOLO_ASSIGN_OR_RETURN(PyValue dict, LiteralParser(dict_text).parse());
  if (dict.kind != PyValue::Kind::kDict) {
    return invalid_argument(
        "malformed header: expected a dict with 'descr', 'fortran_order' "
        "and 'shape', found ",
        kind_name(dict.kind));
  }
  const PyValue* descr = nullptr;
  const PyValue* fortran_order = nullptr;
  const PyValue* shape = nullptr;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const PyValue& key = dict.items[i];
    const PyValue* value = &dict.items[i + 1];
    if (key.kind == PyValue::Kind::kString && key.text == "descr") {
      descr = value;
    } else if (key.kind == PyValue::Kind::kString && key.text == "fortran_order") {
      fortran_order = value;
    } else if (key.kind == PyValue::Kind::kString && key.text == "shape") {
      shape = value;
    } else {
      return invalid_argument(
          "malformed header: unexpected key ",
          key.kind == PyValue::Kind::kString ? quoted(key.text) : kind_name(key.kind),
          " (expected 'descr', 'fortran_order', 'shape')");
    }
  }
  for (auto [value, name] : {std::pair{descr, "descr"}, std::pair{fortran_order, "fortran_order"},
                             std::pair{shape, "shape"}}) {
    if (!value) return invalid_argument("malformed header: no '", name, "' key");
  }

  NpyHeader header;
  if (descr->kind == PyValue::Kind::kList) {
    return unsupported(
        "structured dtype (a list of fields) not supported: save a plain "
        "numeric array, e.g. dtype '<f4'");
  }
  if (descr->kind != PyValue::Kind::kString) {
    return invalid_argument("malformed header: 'descr' must be a string, found ",
                            kind_name(descr->kind));
  }
  QYOLO_ASSIGN_OR_RETURN(header.dtype, parse_descr(descr->text));

  if (fortran_order->kind != PyValue::Kind::kBool) {
    return invalid_argument("malformed header: 'fortran_order' must be True or False, found ",
                            kind_name(fortran_order->kind));
  }
  // numpy writes a tuple; a list is accepted too since it cannot mean anything else.
  if (shape->kind != PyValue::Kind::kTuple && shape->kind != PyValue::Kind::kList) {
    return invalid_argument("malformed header: 'shape' must be a tuple of ints, found ",
                            kind_name(shape->kind));
  }
  for (const PyValue& dim : shape->items) {
    if (dim.kind != PyValue::Kind::kInt) {
      return invalid_argument("malformed header: 'shape' must be a tuple of ints, found ",
                              kind_name(dim.kind), " in it");
    }
    header.shape.push_back(dim.integer);
  }
  for (int64_t dim : header.shape) {
    if (dim < 0) {
      return invalid_argument("negative dimension ", dim, " in shape ", python_shape(header.shape));
    }
  }
  // Fortran and C order lay out the same bytes when at most one dimension exceeds 1.
  const auto long_dims =
      std::count_if(header.shape.begin(), header.shape.end(), [](int64_t dim) { return dim > 1; });
  const bool has_zero =
      std::find(header.shape.begin(), header.shape.end(), 0) != header.shape.end();
  if (fortran_order->boolean && long_dims > 1 && !has_zero) {
    return unsupported("Fortran-order array with shape ", python_shape(header.shape),
                       " not supported: save with np.ascontiguousarray(array)");
  }

  // Overflow is checked on the non-zero dimensions so that no product can wrap.
  const size_t item_size = dtype_size(header.dtype);
  uint64_t bytes = item_size;
  for (int64_t dim : header.shape) {
    if (dim == 0) continue;
    if (bytes > std::numeric_limits<int64_t>::max() / static_cast<uint64_t>(dim)) {
      return invalid_argument("shape ", python_shape(header.shape), " of ",
                              dtype_name(header.dtype), " is too large");
    }
    bytes *= static_cast<uint64_t>(dim);
  }
  header.data_bytes = has_zero ? 0 : static_cast<size_t>(bytes);
  return header;
}

Status truncated_header(const Prefix& prefix, uint64_t found) {
  return invalid_argument("truncated header: expected ", prefix.dict_size,
                          " header bytes after the ", prefix.dict_offset, "-byte prefix, found ",
                          found);
}

// Parses the prefix and dict held in `bytes`, which may go on into the data.
Expected<NpyHeader> parse_header(std::string_view bytes) {
  QYOLO_ASSIGN_OR_RETURN(Prefix prefix, parse_prefix(bytes));
  const size_t available = bytes.size() - prefix.dict_offset;
  if (available < prefix.dict_size) return truncated_header(prefix, available);
  // Version 3.0 headers are UTF-8 and older ones Latin-1; they differ only in structured
  // field names, which are rejected anyway, so the bytes are parsed as they are.
  QYOLO_ASSIGN_OR_RETURN(NpyHeader header,
                         interpret_header(bytes.substr(prefix.dict_offset, prefix.dict_size)));
  header.data_offset = prefix.dict_offset + prefix.dict_size;
  return header;
}

Status truncated_data(const NpyHeader& header, uint64_t found) {
  return invalid_argument("truncated: expected ", header.data_bytes, " bytes of data for ",
                          dtype_name(header.dtype), " ", python_shape(header.shape), ", found ",
                          found);
}

// A bool byte other than 0 or 1 is not a valid C++ bool; numpy reads any non-zero as True.
void normalize_bools(Tensor& tensor) {
  if (tensor.dtype() != DType::kBool) return;
  auto* bytes = static_cast<uint8_t*>(tensor.raw());
  for (int64_t i = 0; i < tensor.numel(); ++i) bytes[i] = bytes[i] != 0;
}

Expected<Tensor> parse_npy_bytes(std::string_view bytes) {
  QYOLO_ASSIGN_OR_RETURN(NpyHeader header, parse_header(bytes));
  const size_t found = bytes.size() - header.data_offset;
  if (found < header.data_bytes) return truncated_data(header, found);
  // Bytes after the data are ignored, as numpy does.
  Tensor tensor(header.dtype, header.shape);
  if (header.data_bytes) {
    std::memcpy(tensor.raw(), bytes.data() + header.data_offset, header.data_bytes);
  }
  normalize_bools(tensor);
  return tensor;
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Appends up to `count` bytes from `file` to `out`; stops early at end of file.
void read_into(std::FILE* file, size_t count, std::string& out) {
  char buffer[1 << 16];
  while (count > 0) {
    const size_t n = std::fread(buffer, 1, std::min(count, sizeof(buffer)), file);
    if (n == 0) break;
    out.append(buffer, n);
    count -= n;
  }
}

Expected<Tensor> read_npy_file(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    if (errno == ENOENT) return not_found("no such file (expected a .npy file)");
    return io_error("cannot open: ", std::strerror(errno));
  }
  struct stat info {};
  if (fstat(fileno(file.get()), &info) != 0) return io_error("cannot stat: ", std::strerror(errno));
  if (S_ISDIR(info.st_mode)) return invalid_argument("is a directory, expected a .npy file");
  if (!S_ISREG(info.st_mode)) {
    // A pipe or device has no size to check against, so read it all and parse in memory.
    std::string bytes;
    read_into(file.get(), std::numeric_limits<size_t>::max(), bytes);
    if (std::ferror(file.get())) return io_error("read failed: ", std::strerror(errno));
    return parse_npy_bytes(bytes);
  }

  // Read only the header first: the data goes straight into the tensor, and a corrupt header
  // cannot make us allocate more than the file holds.
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  std::string head;
  read_into(file.get(), 12, head);
  QYOLO_ASSIGN_OR_RETURN(Prefix prefix, parse_prefix(head));
  if (file_size - prefix.dict_offset < prefix.dict_size) {
    return truncated_header(prefix, file_size - prefix.dict_offset);
  }
  // Up to 12 bytes were read but a version 1.0 dict starts at byte 10.
  head.resize(prefix.dict_offset);
  if (std::fseek(file.get(), static_cast<long>(prefix.dict_offset), SEEK_SET) != 0) {
    return io_error("seek failed: ", std::strerror(errno));
  }
  read_into(file.get(), prefix.dict_size, head);
  if (std::ferror(file.get())) return io_error("read failed: ", std::strerror(errno));
  QYOLO_ASSIGN_OR_RETURN(NpyHeader header, parse_header(head));

  const uint64_t found = file_size - header.data_offset;
  if (found < header.data_bytes) return truncated_data(header, found);
  Tensor tensor(header.dtype, header.shape);
  if (header.data_bytes &&
      std::fread(tensor.raw(), 1, header.data_bytes, file.get()) != header.data_bytes) {
    return io_error("read failed after ", header.data_offset, " header bytes: ",
                    std::ferror(file.get()) ? std::strerror(errno) : "file shrank while reading");
  }
  normalize_bools(tensor);
  return tensor;
}

// ---- Writing ----

Status check_writable(const Tensor& tensor) {
  const DTypeCode* code = nullptr;
  for (const DTypeCode& candidate : kDTypeCodes) {
    if (candidate.dtype == tensor.dtype()) code = &candidate;
  }
  if (!code) return invalid_argument("cannot write a tensor of dtype ", dtype_name(tensor.dtype()));
  for (int64_t dim : tensor.shape()) {
    if (dim < 0) {
      return invalid_argument("cannot write shape ", shape_str(tensor.shape()),
                              ": every dimension must be known");
    }
  }
  if (tensor.nbytes() && !tensor.raw()) return invalid_argument("tensor has no data");
  return Status::ok();
}

const char* descr_of(DType dtype) {
  for (const DTypeCode& code : kDTypeCodes) {
    if (code.dtype == dtype) return code.descr;
  }
  return "";
}

void append_le(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

// Magic, version, length and dict, laid out exactly as numpy's np.save does.
std::string npy_header(const Tensor& tensor) {
  std::string dict =
      str_cat("{'descr': '", descr_of(tensor.dtype()),
              "', 'fortran_order': False, 'shape': ", python_shape(tensor.shape()), ", }");
  if (!tensor.shape().empty()) {
    const size_t digits = std::to_string(tensor.shape()[0]).size();
    dict.append(kGrowthAxisDigits - std::min(digits, kGrowthAxisDigits), ' ');
  }
  // Version 1.0 unless the dict does not fit its 16-bit length, as numpy chooses.
  for (int major : {1, 2}) {
    const size_t length_bytes = major == 1 ? 2 : 4;
    const size_t prefix_size = kMagicSize + 2 + length_bytes;
    const size_t used = dict.size() + 1;  // the closing '\n'
    const size_t padding = kDataAlign - (prefix_size + used) % kDataAlign;
    const size_t dict_size = used + padding;
    if (major == 1 && dict_size > 0xffff) continue;
    std::string out(kMagic, kMagicSize);
    out += static_cast<char>(major);
    out += '\0';
    append_le(out, dict_size, length_bytes);
    out += dict;
    out.append(padding, ' ');
    out += '\n';
    return out;
  }
  return {};
}

}  // namespace

Expected<Tensor> parse_npy(const std::string& bytes, const std::string& source) {
  Expected<Tensor> tensor = parse_npy_bytes(bytes);
  if (!tensor) return with_context(tensor.status(), source);
  return tensor;
}

Expected<Tensor> read_npy(const std::string& path) {
  Expected<Tensor> tensor = read_npy_file(path);
  if (!tensor) return with_context(tensor.status(), path);
  return tensor;
}

// Returns an empty string for a tensor that cannot be written (no dtype, unknown dims);
// write_npy reports those as errors.
std::string serialize_npy(const Tensor& tensor) {
  if (!check_writable(tensor).is_ok()) return {};
  std::string out = npy_header(tensor);
  const size_t header_size = out.size();
  out.resize(header_size + tensor.nbytes());
  if (tensor.nbytes()) std::memcpy(out.data() + header_size, tensor.raw(), tensor.nbytes());
  return out;
}

Status write_npy(const Tensor& tensor, const std::string& path) {
  QYOLO_RETURN_IF_ERROR(with_context(check_writable(tensor), path));
  const std::string header = npy_header(tensor);
  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (!file) return io_error(path, ": cannot open for writing: ", std::strerror(errno));
  // The data is written from the tensor directly rather than copied into one buffer.
  bool written = std::fwrite(header.data(), 1, header.size(), file.get()) == header.size();
  if (written && tensor.nbytes()) {
    written = std::fwrite(tensor.raw(), 1, tensor.nbytes(), file.get()) == tensor.nbytes();
  }
  std::FILE* raw_file = file.release();
  const bool closed = std::fclose(raw_file) == 0;
  if (!written || !closed) {
    return io_error(path, ": write failed: ", std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace qyolo
