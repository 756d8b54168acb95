#include "runtime/backends/cpu/simple_onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include "runtime/backends/cpu/onednn_engine.h"

namespace qyolo::cpu {

struct OnednnPrimitive::Impl {
  dnnl::primitive primitive;
  dnnl::memory::desc src_md, dst_md;
  dnnl::stream stream{cpu_engine()};
  bool is_reorder = false;
};

OnednnPrimitive::OnednnPrimitive(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnPrimitive::~OnednnPrimitive() = default;

Expected<std::unique_ptr<OnednnPrimitive>> OnednnPrimitive::sigmoid(int64_t count) {
  using dnnl::memory;
  try {
    auto impl = std::make_unique<Impl>();
    impl->src_md = memory::desc({count}, memory::data_type::f32, memory::format_tag::a);
    impl->dst_md = impl->src_md;
    dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference,
                                     dnnl::algorithm::eltwise_logistic, impl->src_md, 0.0f, 0.0f);
    dnnl::eltwise_forward::primitive_desc pd(desc, cpu_engine());
    impl->primitive = dnnl::eltwise_forward(pd);
    return std::unique_ptr<OnednnPrimitive>(new OnednnPrimitive(std::move(impl)));
  } catch (const dnnl::error& e) {
    return unsupported("oneDNN sigmoid: ", e.what());
  }
}

Expected<std::unique_ptr<OnednnPrimitive>> OnednnPrimitive::reorder(const Shape& logical_shape,
                                                                    bool to_nhwc) {
  using dnnl::memory;
  using tag = memory::format_tag;
  try {
    auto impl = std::make_unique<Impl>();
    const memory::dims dims(logical_shape.begin(), logical_shape.end());
    impl->src_md = memory::desc(dims, memory::data_type::f32, to_nhwc ? tag::nchw : tag::nhwc);
    impl->dst_md = memory::desc(dims, memory::data_type::f32, to_nhwc ? tag::nhwc : tag::nchw);
    dnnl::reorder::primitive_desc pd(cpu_engine(), impl->src_md, cpu_engine(), impl->dst_md);
    impl->primitive = dnnl::reorder(pd);
    impl->is_reorder = true;
    return std::unique_ptr<OnednnPrimitive>(new OnednnPrimitive(std::move(impl)));
  } catch (const dnnl::error& e) {
    return unsupported("oneDNN reorder: ", e.what());
  }
}

Status OnednnPrimitive::run(const Tensor& input, Tensor& output) {
  try {
    dnnl::memory src(impl_->src_md, cpu_engine(), const_cast<void*>(input.raw()));
    dnnl::memory dst(impl_->dst_md, cpu_engine(), output.raw());
    impl_->primitive.execute(impl_->stream,
                             {{impl_->is_reorder ? DNNL_ARG_FROM : DNNL_ARG_SRC, src},
                              {impl_->is_reorder ? DNNL_ARG_TO : DNNL_ARG_DST, dst}});
    impl_->stream.wait();
  } catch (const dnnl::error& e) {
    return internal_error("oneDNN primitive failed: ", e.what());
  }
  return Status::ok();
}

}  // namespace qyolo::cpu
