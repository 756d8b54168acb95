// NumPy .npy files (format 1.0-3.0, little-endian, C order) to and from Tensors.
#pragma once

#include <string>

#include "qyolo/status.h"
#include "qyolo/tensor.h"

namespace qyolo {

// Reads a .npy file. Supports float32/float64/float16/int8/uint8/int32/int64/bool, C order.
// Errors name the file and what is wrong (bad magic, Fortran order, big-endian, truncated...).
Expected<Tensor> read_npy(const std::string& path);
// Parses .npy bytes; `source` names them in errors.
Expected<Tensor> parse_npy(const std::string& bytes, const std::string& source);

// Writes `tensor` as a version 1.0 .npy file.
Status write_npy(const Tensor& tensor, const std::string& path);
// The .npy bytes of `tensor`.
std::string serialize_npy(const Tensor& tensor);

}  // namespace qyolo
