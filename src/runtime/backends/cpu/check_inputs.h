// The run-time input check both CPU executors share: every expected input given, with its
// prepared dtype and shape, and no unknown names. Errors name the tensor.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "qyolo/graph.h"
#include "qyolo/tensor.h"

namespace qyolo::cpu {

inline Status check_inputs(const std::vector<ValueInfo>& expected,
                           const std::map<std::string, Tensor>& given) {
  for (const auto& [name, tensor] : given) {
    bool known = false;
    for (const auto& e : expected) known = known || e.name == name;
    if (!known) {
      std::string names;
      for (const auto& e : expected) names += (names.empty() ? "" : ", ") + e.name;
      return not_found("the model has no input named '", name, "' (inputs: ", names, ")");
    }
  }
  for (const auto& e : expected) {
    auto it = given.find(e.name);
    if (it == given.end()) {
      return not_found("input '", e.name, "' (", dtype_name(e.dtype), " ", shape_str(e.shape),
                       ") is missing");
    }
    if (it->second.dtype() != e.dtype || it->second.shape() != e.shape) {
      return invalid_argument("input '", e.name, "' is ", dtype_name(it->second.dtype()), " ",
                              shape_str(it->second.shape()), ", expected ", dtype_name(e.dtype),
                              " ", shape_str(e.shape));
    }
  }
  return Status::ok();
}

}  // namespace qyolo::cpu
