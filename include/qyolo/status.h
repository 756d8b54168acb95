// Status and Expected<T>: how every qyolo library function reports failure.
// No exceptions cross the public API; a message names the file, node or tensor at fault.
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace qyolo {

enum class StatusCode { kOk = 0, kInvalidArgument, kNotFound, kUnsupported, kIo, kInternal };

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Concatenates any streamable values into one string (g++ 12 has no <format>).
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
Status invalid_argument(const Args&... args) {
  return {StatusCode::kInvalidArgument, str_cat(args...)};
}
template <typename... Args>
Status not_found(const Args&... args) {
  return {StatusCode::kNotFound, str_cat(args...)};
}
template <typename... Args>
Status unsupported(const Args&... args) {
  return {StatusCode::kUnsupported, str_cat(args...)};
}
template <typename... Args>
Status io_error(const Args&... args) {
  return {StatusCode::kIo, str_cat(args...)};
}
template <typename... Args>
Status internal_error(const Args&... args) {
  return {StatusCode::kInternal, str_cat(args...)};
}

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : state_(std::move(value)) {}         // NOLINT: implicit by design
  Expected(Status status) : state_(std::move(status)) {}  // NOLINT: implicit by design

  bool has_value() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The error; Status::ok() when a value is held.
  Status status() const { return has_value() ? Status::ok() : std::get<Status>(state_); }

 private:
  std::variant<T, Status> state_;
};

// Prefixes a status message with context, e.g. the file being read.
inline Status with_context(const Status& status, const std::string& context) {
  if (status.is_ok()) return status;
  return {status.code(), context + ": " + status.message()};
}

}  // namespace qyolo

#define QYOLO_CONCAT_INNER(a, b) a##b
#define QYOLO_CONCAT(a, b) QYOLO_CONCAT_INNER(a, b)

#define QYOLO_RETURN_IF_ERROR(expr)                   \
  do {                                                \
    ::qyolo::Status qyolo_status_ = (expr);           \
    if (!qyolo_status_.is_ok()) return qyolo_status_; \
  } while (0)

#define QYOLO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.has_value()) return tmp.status();        \
  lhs = std::move(tmp).value()

#define QYOLO_ASSIGN_OR_RETURN(lhs, expr) \
  QYOLO_ASSIGN_OR_RETURN_IMPL(QYOLO_CONCAT(qyolo_expected_, __LINE__), lhs, expr)
