// TensorRT calibration-cache text: read, write, and check against a model.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "qyolo/quant.h"

namespace qyolo {
namespace {

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

bool scale_is_valid(float scale) { return std::isfinite(scale) && scale > 0.0f; }

// "TRT-8600-EntropyCalibration2" -> version and algorithm.
Status parse_header(const std::string& line, const std::string& source, CalibrationCache& cache) {
  auto bad = [&] {
    return invalid_argument(
        source, ":1: expected a header like 'TRT-8600-EntropyCalibration2', got '", line, "'");
  };
  if (line.rfind("TRT-", 0) != 0) return bad();
  const size_t dash = line.find('-', 4);
  if (dash == std::string::npos || dash == 4 || dash + 1 == line.size()) return bad();
  cache.version = line.substr(4, dash - 4);
  cache.algorithm = line.substr(dash + 1);
  for (char c : cache.version) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
  }
  for (char c : cache.algorithm) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return bad();
  }
  return Status::ok();
}

}  // namespace

const CacheEntry* CalibrationCache::find(const std::string& tensor) const {
  for (const auto& entry : entries) {
    if (entry.tensor == tensor) return &entry;
  }
  return nullptr;
}

std::string scale_to_hex(float scale) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%x", std::bit_cast<uint32_t>(scale));
  return buffer;
}

Expected<CalibrationCache> parse_calibration_cache(const std::string& text,
                                                   const std::string& source) {
  CalibrationCache cache;
  cache.entries.clear();
  if (text.empty())
    return invalid_argument(source, ": empty file, expected a TensorRT calibration cache");
  std::unordered_map<std::string, int> line_of;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1) {
      QYOLO_RETURN_IF_ERROR(parse_header(line, source, cache));
      continue;
    }
    if (line.empty()) continue;
    // Tensor names may hold ':' (TensorFlow's "x:0"), so split at the last ": ".
    const size_t colon = line.rfind(": ");
    std::string hex = colon == std::string::npos ? "" : line.substr(colon + 2);
    const bool hex_ok = !hex.empty() && std::all_of(hex.begin(), hex.end(), is_hex_digit);
    if (colon == std::string::npos || colon == 0 || !hex_ok) {
      return invalid_argument(source, ":", number, ": malformed line '", line,
                              "' (expected '<tensor>: <hex float32 scale>')");
    }
    const std::string tensor = line.substr(0, colon);
    const size_t first = hex.find_first_not_of('0');
    const std::string digits = first == std::string::npos ? "0" : hex.substr(first);
    if (digits.size() > 8) {
      return invalid_argument(source, ":", number, ": tensor '", tensor, "': '", hex,
                              "' does not fit in 32 bits");
    }
    uint32_t bits = 0;
    for (char c : digits) bits = bits * 16 + static_cast<uint32_t>(hex_value(c));
    const float scale = std::bit_cast<float>(bits);
    if (!scale_is_valid(scale)) {
      return invalid_argument(source, ":", number, ": tensor '", tensor, "' has scale ", scale,
                              " (", hex, "): a scale must be positive and finite");
    }
    auto [it, inserted] = line_of.emplace(tensor, number);
    if (!inserted) {
      return invalid_argument(source, ":", number, ": tensor '", tensor,
                              "' is listed again (first on line ", it->second, ")");
    }
    cache.entries.push_back({tensor, scale});
  }
  return cache;
}

Expected<CalibrationCache> read_calibration_cache(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return io_error(path, ": cannot open the calibration cache");
  std::ostringstream bytes;
  bytes << file.rdbuf();
  return parse_calibration_cache(bytes.str(), path);
}

Expected<std::string> format_calibration_cache(const CalibrationCache& cache) {
  std::string out = "TRT-" + cache.version + "-" + cache.algorithm;
  CalibrationCache check;
  QYOLO_RETURN_IF_ERROR(parse_header(out, "calibration cache header", check));
  out += "\n";
  std::set<std::string> seen;
  for (const auto& entry : cache.entries) {
    if (entry.tensor.empty() || entry.tensor.find('\n') != std::string::npos) {
      return invalid_argument("calibration cache: tensor name '", entry.tensor,
                              "' cannot be written on one line");
    }
    if (!scale_is_valid(entry.scale)) {
      return invalid_argument("calibration cache: tensor '", entry.tensor, "' has scale ",
                              entry.scale, ": a scale must be positive and finite");
    }
    if (!seen.insert(entry.tensor).second) {
      return invalid_argument("calibration cache: tensor '", entry.tensor, "' is listed twice");
    }
    out += entry.tensor + ": " + scale_to_hex(entry.scale) + "\n";
  }
  return out;
}

Status write_calibration_cache(const CalibrationCache& cache, const std::string& path) {
  QYOLO_ASSIGN_OR_RETURN(std::string text, format_calibration_cache(cache));
  std::ofstream file(path, std::ios::binary);
  if (!file) return io_error(path, ": cannot create the calibration cache");
  file << text;
  if (!file.flush()) return io_error(path, ": write failed");
  return Status::ok();
}

std::vector<std::string> cache_tensors_missing_from(const CalibrationCache& cache,
                                                    const Graph& graph) {
  std::set<std::string> values;
  for (const auto& input : graph.inputs) values.insert(input.name);
  for (const auto& [name, tensor] : graph.initializers) values.insert(name);
  for (const auto& node : graph.nodes) values.insert(node.outputs.begin(), node.outputs.end());
  std::vector<std::string> missing;
  for (const auto& entry : cache.entries) {
    if (!values.count(entry.tensor)) missing.push_back(entry.tensor);
  }
  return missing;
}

}  // namespace qyolo
