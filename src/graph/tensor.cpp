#include "qyolo/tensor.h"

#include <cmath>
#include <cstdlib>

namespace qyolo {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kUInt8:
      return 1;
    case DType::kInt8:
      return 1;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kBool:
      return 1;
    case DType::kFloat16:
      return 2;
    case DType::kFloat64:
      return 8;
    case DType::kUndefined:
      return 0;
  }
  return 0;
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt8:
      return "int8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat64:
      return "float64";
    case DType::kUndefined:
      break;
  }
  return str_cat("undefined(", static_cast<int>(dtype), ")");
}

bool dtype_is_known(int32_t code) { return dtype_size(static_cast<DType>(code)) != 0; }

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  if (shape.empty()) return "scalar";
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += "x";
    out += shape[i] < 0 ? "?" : std::to_string(shape[i]);
  }
  return out;
}

void Tensor::Free::operator()(std::byte* p) const { std::free(p); }

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  numel_ = shape_numel(shape_);
  if (numel_ < 0) numel_ = 0;
  size_t bytes = nbytes();
  // aligned_alloc needs a multiple of the alignment; always allocate so raw() is non-null.
  size_t padded = ((bytes + 63) / 64) * 64;
  if (padded == 0) padded = 64;
  data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, padded)));
  std::memset(data_.get(), 0, padded);
}

Tensor::Tensor(const Tensor& other) : Tensor(other.dtype_, other.shape_) {
  if (other.data_ && nbytes()) std::memcpy(data_.get(), other.data_.get(), nbytes());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) *this = Tensor(other);
  return *this;
}

Status Tensor::reshape(const Shape& shape) {
  if (shape_numel(shape) != numel_) {
    return invalid_argument("cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  }
  shape_ = shape;
  return Status::ok();
}

namespace {

template <typename Out>
std::vector<Out> convert_all(const Tensor& t) {
  std::vector<Out> out(static_cast<size_t>(t.numel()));
  auto fill = [&](auto* p) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Out>(p[i]);
  };
  switch (t.dtype()) {
    case DType::kFloat32:
      fill(t.data<float>());
      break;
    case DType::kFloat64:
      fill(t.data<double>());
      break;
    case DType::kInt8:
      fill(t.data<int8_t>());
      break;
    case DType::kUInt8:
      fill(t.data<uint8_t>());
      break;
    case DType::kInt32:
      fill(t.data<int32_t>());
      break;
    case DType::kInt64:
      fill(t.data<int64_t>());
      break;
    case DType::kBool:
      fill(t.data<bool>());
      break;
    case DType::kFloat16:
      for (size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<Out>(half_to_float(t.data<uint16_t>()[i]));
      }
      break;
    case DType::kUndefined:
      break;
  }
  return out;
}

}  // namespace

std::vector<int64_t> Tensor::to_int64() const { return convert_all<int64_t>(*this); }
std::vector<double> Tensor::to_double() const { return convert_all<double>(*this); }

bool Tensor::operator==(const Tensor& other) const {
  if (dtype_ != other.dtype_ || shape_ != other.shape_) return false;
  if (nbytes() == 0) return true;
  return std::memcmp(raw(), other.raw(), nbytes()) == 0;
}

uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                               // subnormal half or zero
    // Shift the full mantissa into the subnormal position with round-half-even.
    const uint32_t exponent = abs >> 23;
    if (exponent < 102) return static_cast<uint16_t>(sign);
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t x;
  if (exponent == 0) {
    if (mantissa == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      x = sign | ((112 - e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 31) {
    x = sign | 0x7f800000u | (mantissa << 13);
  } else {
    x = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &x, 4);
  return out;
}

Expected<Tensor> cast_tensor(const Tensor& tensor, DType dtype) {
  if (dtype_size(dtype) == 0) return unsupported("cast to ", dtype_name(dtype));
  Tensor out(dtype, tensor.shape());
  if (tensor.dtype() == dtype) {
    if (tensor.nbytes()) std::memcpy(out.raw(), tensor.raw(), tensor.nbytes());
    return out;
  }
  const std::vector<double> values = tensor.to_double();
  const size_t n = values.size();
  switch (dtype) {
    case DType::kFloat32:
      for (size_t i = 0; i < n; ++i) out.data<float>()[i] = static_cast<float>(values[i]);
      break;
    case DType::kFloat64:
      for (size_t i = 0; i < n; ++i) out.data<double>()[i] = values[i];
      break;
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) {
        out.data<uint16_t>()[i] = float_to_half(static_cast<float>(values[i]));
      }
      break;
    case DType::kInt8:
      for (size_t i = 0; i < n; ++i) out.data<int8_t>()[i] = static_cast<int8_t>(values[i]);
      break;
    case DType::kUInt8:
      for (size_t i = 0; i < n; ++i) out.data<uint8_t>()[i] = static_cast<uint8_t>(values[i]);
      break;
    case DType::kInt32:
      for (size_t i = 0; i < n; ++i) out.data<int32_t>()[i] = static_cast<int32_t>(values[i]);
      break;
    case DType::kInt64:
      if (tensor.dtype() == DType::kInt64 || tensor.dtype() == DType::kInt32) {
        const auto ints = tensor.to_int64();  // exact beyond 2^53
        std::memcpy(out.raw(), ints.data(), ints.size() * 8);
      } else {
        for (size_t i = 0; i < n; ++i) out.data<int64_t>()[i] = static_cast<int64_t>(values[i]);
      }
      break;
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) out.data<bool>()[i] = values[i] != 0.0;
      break;
    case DType::kUndefined:
      break;
  }
  return out;
}

}  // namespace qyolo
