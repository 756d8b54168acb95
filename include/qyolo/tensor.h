// Element types, shapes and the host Tensor that owns its bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "qyolo/status.h"

namespace qyolo {

// Numbered as ONNX's TensorProto.DataType, so import/export is a cast.
enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
};

// Bytes per element; 0 for kUndefined or a type qyolo does not know.
size_t dtype_size(DType dtype);
// "float32", "int8", ...; "undefined(N)" for an unknown code.
std::string dtype_name(DType dtype);
// True for the codes listed in DType.
bool dtype_is_known(int32_t code);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::kInt8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kUInt8;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kInt32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::kBool;
}

// Dimensions, outermost first. -1 marks a dimension that is not known.
using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar); -1 if any dimension is unknown.
int64_t shape_numel(const Shape& shape);
// "1x3x640x640" ("scalar" for rank 0, "?" for unknown dims).
std::string shape_str(const Shape& shape);

// A dense, row-major host tensor that owns its data (64-byte aligned, zero-initialised).
// Copying copies the data.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  // A 1-D tensor holding `values`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, Shape shape = {}) {
    if (shape.empty() && values.size() != 1) shape = {static_cast<int64_t>(values.size())};
    Tensor tensor(dtype_of<T>(), shape);
    if (!values.empty()) std::memcpy(tensor.raw(), values.data(), values.size() * sizeof(T));
    return tensor;
  }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool empty() const { return dtype_ == DType::kUndefined; }

  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }
  template <typename T>
  T* data() {
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(raw());
  }

  // Reinterprets the same bytes with another shape of equal element count.
  Status reshape(const Shape& shape);

  // The elements converted to int64 (for shape-like int32/int64/float tensors).
  std::vector<int64_t> to_int64() const;
  // The elements converted to double (any numeric dtype, float16 included).
  std::vector<double> to_double() const;

  // Same dtype, shape and bytes.
  bool operator==(const Tensor& other) const;

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  int64_t numel_ = 0;
  std::unique_ptr<std::byte[], Free> data_;
};

// IEEE half <-> float, round to nearest even.
uint16_t float_to_half(float value);
float half_to_float(uint16_t bits);

// Converts every element to `dtype` (as ONNX Cast does: float->int truncates toward zero).
Expected<Tensor> cast_tensor(const Tensor& tensor, DType dtype);

}  // namespace qyolo
