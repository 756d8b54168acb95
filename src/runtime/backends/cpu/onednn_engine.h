// The one oneDNN CPU engine every primitive of the executor is created on.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace qyolo::cpu {

inline dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace qyolo::cpu
