// Shared pieces of the GPU tests of qyolo/cuda_ops.h: the no-GPU skip, device round trips,
// half floats, and a minimal .npy reader (the GPU machine's standalone build has no qyolo_io).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "qyolo/conv_int8.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_ops.h"

namespace qyolo::testing_cuda {

#define QYOLO_SKIP_WITHOUT_GPU()          \
  if (::qyolo::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): GPU test not run"

#define QYOLO_ASSERT_OK(expr)                            \
  do {                                                   \
    const ::qyolo::Status qyolo_s_ = (expr);             \
    ASSERT_TRUE(qyolo_s_.is_ok()) << qyolo_s_.message(); \
  } while (0)

inline float half_to_float_bits(uint16_t h) { return half_bits_to_float(h); }
inline float round_half(float v) { return half_to_float_bits(float_to_half_rne(v)); }

template <typename T>
cuda::DeviceBuffer upload(const std::vector<T>& host) {
  auto buffer = cuda::DeviceBuffer::allocate(std::max<size_t>(host.size() * sizeof(T), 16));
  EXPECT_TRUE(buffer.has_value()) << buffer.status().message();
  if (!buffer) return {};
  if (!host.empty()) {
    EXPECT_TRUE(buffer->upload(host.data(), host.size() * sizeof(T)).is_ok());
  }
  return std::move(*buffer);
}

template <typename T>
std::vector<T> download(const cuda::DeviceBuffer& buffer, size_t count) {
  std::vector<T> host(count);
  EXPECT_TRUE(cuda::check(cudaDeviceSynchronize(), "kernel").is_ok());
  EXPECT_TRUE(buffer.download(host.data(), count * sizeof(T)).is_ok());
  return host;
}

// A .npy array: dtype descriptor ("|u1", "<f2", "<f4"), shape, raw bytes.
struct Npy {
  std::string descr;
  std::vector<int64_t> shape;
  std::string bytes;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

inline bool read_npy_file(const std::string& path, Npy& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error = path + ": cannot open", false;
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0)
    return error = path + ": not .npy", false;
  const int major = static_cast<unsigned char>(all[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(all[8]) | static_cast<unsigned char>(all[9]) << 8;
    start = 10;
  } else {
    uint32_t len;
    std::memcpy(&len, all.data() + 8, 4);
    header_len = len;
    start = 12;
  }
  const std::string header = all.substr(start, header_len);
  auto field = [&](const std::string& key) {
    const size_t k = header.find("'" + key + "'");
    return k == std::string::npos ? std::string() : header.substr(header.find(':', k) + 1);
  };
  const std::string d = field("descr");
  out.descr = d.substr(d.find('\'') + 1, d.find('\'', d.find('\'') + 1) - d.find('\'') - 1);
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    return error = path + ": Fortran order", false;
  const std::string s = field("shape");
  std::stringstream dims(s.substr(s.find('(') + 1, s.find(')') - s.find('(') - 1));
  out.shape.clear();
  for (std::string item; std::getline(dims, item, ',');)
    if (item.find_first_of("0123456789") != std::string::npos)
      out.shape.push_back(std::stoll(item));
  out.bytes = all.substr(start + header_len);
  return true;
}

inline std::string fixtures_dir() {
  if (const char* env = std::getenv("QYOLO_CUDA_OPS_FIXTURES"); env && *env) return env;
  return QYOLO_CUDA_OPS_FIXTURES;
}

}  // namespace qyolo::testing_cuda
