// Shared helpers for qyolo's tests: where the data is, temporary folders, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace qyolo::testing {

// The shared data folder: $QYOLO_DATA, else the one next to the checkout.
inline std::filesystem::path data_dir() {
  if (const char* env = std::getenv("QYOLO_DATA"); env && *env) return env;
  return QYOLO_TEST_DATA;
}

inline std::filesystem::path data_path(const std::string& relative) {
  return data_dir() / relative;
}

inline std::filesystem::path yolov5n_path() { return data_path("models/yolov5n.onnx"); }

// A fresh empty folder under the system temp dir, named after the running test.
inline std::filesystem::path temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("qyolo_") + info->test_suite_name() + "_" + info->name();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  }
  auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command and captures its output.
inline CommandResult run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, output};
}

// Runs the qyolo CLI with `args`.
inline CommandResult run_qyolo(const std::string& args) {
  return run_command(std::string(QYOLO_BINARY) + " " + args);
}

inline bool have_python_oracles() { return std::filesystem::exists(QYOLO_PYTHON); }

}  // namespace qyolo::testing
