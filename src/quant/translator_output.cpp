// The translator's files, byte for byte as NVIDIA's Python writes them: the precision config
// (json.dump with indent=4), the calibration cache and the --layerPrecisions argument.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "qyolo/onnx.h"
#include "qyolo/quant.h"

namespace qyolo {
namespace {

// A JSON string as Python's json module writes it with ensure_ascii: non-ASCII as \uXXXX.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  auto escape = [&](uint32_t code) {
    char buffer[8];
    std::snprintf(buffer, sizeof(buffer), "\\u%04x", code);
    out += buffer;
  };
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    uint32_t code = byte;
    size_t length = 1;
    if (byte >= 0xf0 && i + 3 < text.size()) {
      code = ((byte & 0x07u) << 18) | ((text[i + 1] & 0x3fu) << 12) | ((text[i + 2] & 0x3fu) << 6) |
             (text[i + 3] & 0x3fu);
      length = 4;
    } else if (byte >= 0xe0 && i + 2 < text.size()) {
      code = ((byte & 0x0fu) << 12) | ((text[i + 1] & 0x3fu) << 6) | (text[i + 2] & 0x3fu);
      length = 3;
    } else if (byte >= 0xc0 && i + 1 < text.size()) {
      code = ((byte & 0x1fu) << 6) | (text[i + 1] & 0x3fu);
      length = 2;
    }
    i += length;
    switch (code) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (code >= 0x10000) {
      code -= 0x10000;
      escape(0xd800 + (code >> 10));
      escape(0xdc00 + (code & 0x3ff));
    } else if (code < 0x20 || code >= 0x7f) {
      escape(code);
    } else {
      out += static_cast<char>(code);
    }
  }
  return out + "\"";
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  if (!file) return io_error(path, ": cannot create the file");
  file << text;
  if (!file.flush()) return io_error(path, ": write failed");
  return Status::ok();
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string text(buffer, result.ptr);  // shortest round trip, "-d.ddde-05"
  const bool negative = text[0] == '-';
  if (negative) text.erase(0, 1);
  const size_t e = text.find('e');
  const int exponent = std::stoi(text.substr(e + 1));
  std::string digits;
  for (char c : text.substr(0, e)) {
    if (c != '.') digits += c;
  }
  // Python writes fixed notation when the decimal point falls in (-4, 16] digits.
  const int point = exponent + 1;
  const int n = static_cast<int>(digits.size());
  std::string out = negative ? "-" : "";
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      out.append("0.").append(static_cast<size_t>(-point), '0').append(digits);
    } else if (point >= n) {
      out.append(digits).append(static_cast<size_t>(point - n), '0').append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(point))
          .append(".")
          .append(digits, static_cast<size_t>(point));
    }
  } else {
    out.append(digits, 0, 1);
    if (n > 1) out.append(".").append(digits, 1);
    const int shown = point - 1;
    char exp_text[16];
    std::snprintf(exp_text, sizeof(exp_text), "e%c%02d", shown < 0 ? '-' : '+', std::abs(shown));
    out += exp_text;
  }
  return out;
}

Expected<CalibrationCache> translation_cache(const Translation& translation,
                                             const std::string& trt_version) {
  CalibrationCache cache;
  cache.version = trt_version;
  for (const auto& entry : translation.scales) {
    const float scale = static_cast<float>(entry.scale);
    if (!std::isfinite(scale) || scale <= 0.0f) {
      return invalid_argument("tensor '", entry.tensor, "' has scale ", entry.scale,
                              ", which a calibration cache cannot hold");
    }
    cache.entries.push_back({entry.tensor, scale});
  }
  return cache;
}

std::string precision_config_json(const Translation& translation) {
  std::string out = "{\n    \"int8_tensor_scales\": ";
  if (translation.scales.empty()) {
    out += "{}";
  } else {
    out += "{\n";
    for (size_t i = 0; i < translation.scales.size(); ++i) {
      const auto& entry = translation.scales[i];
      out += "        " + json_string(entry.tensor) + ": " + python_float_repr(entry.scale);
      out += i + 1 < translation.scales.size() ? ",\n" : "\n";
    }
    out += "    }";
  }
  out += ",\n    \"fp16_nodes\": ";
  if (translation.fp16_nodes.empty()) {
    out += "[]";
  } else {
    out += "[\n";
    for (size_t i = 0; i < translation.fp16_nodes.size(); ++i) {
      out += "        " + json_string(translation.fp16_nodes[i]);
      out += i + 1 < translation.fp16_nodes.size() ? ",\n" : "\n";
    }
    out += "    ]";
  }
  return out + "\n}";
}

std::string layer_precisions_arg(const Translation& translation) {
  std::string out;
  for (const auto& node : translation.fp16_nodes) out += node + ":fp16,";
  return out;
}

TranslationFiles translation_files(const std::string& dir, const std::string& stem) {
  const std::filesystem::path base(dir);
  return {(base / (stem + "_noqdq.onnx")).string(),
          (base / (stem + "_precision_config_calib.cache")).string(),
          (base / (stem + "_precision_config.json")).string(),
          (base / (stem + "_precision_config_layer_arg.txt")).string()};
}

Expected<TranslationFiles> write_translation(const Translation& translation, const std::string& dir,
                                             const std::string& stem,
                                             const std::string& trt_version) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return io_error(dir, ": cannot create the output folder: ", error.message());
  const TranslationFiles files = translation_files(dir, stem);
  QYOLO_ASSIGN_OR_RETURN(CalibrationCache cache, translation_cache(translation, trt_version));
  QYOLO_RETURN_IF_ERROR(save_onnx(translation.graph, files.onnx));
  QYOLO_RETURN_IF_ERROR(write_text(files.json, precision_config_json(translation)));
  QYOLO_RETURN_IF_ERROR(write_calibration_cache(cache, files.cache));
  QYOLO_RETURN_IF_ERROR(write_text(files.layer_arg, layer_precisions_arg(translation)));
  return files;
}

}  // namespace qyolo
