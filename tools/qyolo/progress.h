// A one-line progress bar on stderr: redrawn in place on a terminal, a line per quarter
// otherwise (so CI logs stay short).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace qyolo::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total)
      : label_(std::move(label)),
        total_(total),
        start_(std::chrono::steady_clock::now()),
        tty_(isatty(fileno(stderr)) != 0) {}

  // Reports that `done` items are finished; `note` is appended (e.g. a failure count).
  void update(int64_t done, const std::string& note = "") {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const bool last = done >= total_;
    if (tty_) {
      if (!last && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
      last_draw_ = now;
      constexpr int kWidth = 30;
      const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
      std::string bar(filled, '=');
      if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
      std::fprintf(stderr, "\r%s %4lld/%lld [%s] %5.1f it/s %s", label_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_), bar.c_str(),
                   seconds > 0 ? done / seconds : 0.0, note.c_str());
      if (last) std::fputc('\n', stderr);
    } else {
      const int quarter = total_ > 0 ? static_cast<int>(4 * done / total_) : 4;
      if (quarter == last_quarter_) return;
      last_quarter_ = quarter;
      std::fprintf(stderr, "%s %lld/%lld (%.1f it/s) %s\n", label_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_),
                   seconds > 0 ? done / seconds : 0.0, note.c_str());
    }
    std::fflush(stderr);
  }

 private:
  std::string label_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_draw_{};
  bool tty_;
  int last_quarter_ = 0;
};

}  // namespace qyolo::cli
