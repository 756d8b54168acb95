// Reads ../shared/data/yolov5_conv_shapes_640.json ({"yolov5s": {"convs": [{"cin": 3, ...,
// "onnx_node": "..."}, ...]}, ...}) for the GPU test and the benchmark. A tiny reader for this
// one flat format, so the standalone CUDA build needs no JSON library.
#pragma once

#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "qyolo/conv_int8.h"
#include "qyolo/status.h"

namespace qyolo::testing {

struct ConvShapeEntry {
  std::string onnx_node;
  ConvInt8Shape shape;  // batch 1
};

// The convolutions of `model` in file order.
inline Expected<std::vector<ConvShapeEntry>> read_conv_shapes(const std::string& path,
                                                              const std::string& model) {
  std::ifstream file(path);
  if (!file) return io_error(path, ": cannot open");
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string text = buffer.str();

  const size_t model_at = text.find("\"" + model + "\"");
  if (model_at == std::string::npos) return not_found(path, ": no model \"", model, "\"");
  const size_t convs_at = text.find("\"convs\"", model_at);
  const size_t list_at = convs_at == std::string::npos ? convs_at : text.find('[', convs_at);
  if (list_at == std::string::npos) return invalid_argument(path, ": no \"convs\" list for ", model);

  std::vector<ConvShapeEntry> entries;
  size_t at = list_at + 1;
  while (true) {
    while (at < text.size() && (std::isspace(static_cast<unsigned char>(text[at])) || text[at] == ','))
      ++at;
    if (at >= text.size()) return invalid_argument(path, ": unterminated \"convs\" list");
    if (text[at] == ']') break;
    if (text[at] != '{') return invalid_argument(path, ": expected an object at byte ", at);
    const size_t end = text.find('}', at);
    if (end == std::string::npos) return invalid_argument(path, ": unterminated object at byte ", at);

    // "key": value pairs; values are integers or strings without escapes.
    std::map<std::string, std::string> fields;
    size_t p = at + 1;
    while (true) {
      const size_t key_start = text.find('"', p);
      if (key_start == std::string::npos || key_start > end) break;
      const size_t key_end = text.find('"', key_start + 1);
      const size_t colon = text.find(':', key_end);
      size_t v = colon + 1;
      while (std::isspace(static_cast<unsigned char>(text[v]))) ++v;
      size_t v_end;
      std::string value;
      if (text[v] == '"') {
        v_end = text.find('"', v + 1);
        value = text.substr(v + 1, v_end - v - 1);
        ++v_end;
      } else {
        v_end = v;
        while (v_end < end && text[v_end] != ',') ++v_end;
        value = text.substr(v, v_end - v);
      }
      fields[text.substr(key_start + 1, key_end - key_start - 1)] = value;
      p = v_end;
    }

    ConvShapeEntry entry;
    try {
      entry.onnx_node = fields.at("onnx_node");
      ConvInt8Shape& s = entry.shape;
      s.in_channels = std::stoi(fields.at("cin"));
      s.in_h = std::stoi(fields.at("hin"));
      s.in_w = std::stoi(fields.at("win"));
      s.out_channels = std::stoi(fields.at("cout"));
      s.kernel = std::stoi(fields.at("k"));
      s.stride = std::stoi(fields.at("stride"));
      s.pad = std::stoi(fields.at("pad"));
      if (s.out_h() != std::stoi(fields.at("hout")) || s.out_w() != std::stoi(fields.at("wout")))
        return invalid_argument(path, ": ", entry.onnx_node, ": hout/wout disagree with the geometry");
    } catch (const std::exception&) {
      return invalid_argument(path, ": a conv of ", model, " lacks a field or has a bad number");
    }
    entries.push_back(entry);
    at = end + 1;
  }
  if (entries.empty()) return invalid_argument(path, ": no convolutions for ", model);
  return entries;
}

}  // namespace qyolo::testing
