#include "runtime/backends/cpu/conv_onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include "ops/conv_params.h"
#include "runtime/backends/cpu/onednn_engine.h"

namespace qyolo::cpu {

struct OnednnConv::Impl {
  dnnl::convolution_forward primitive;
  dnnl::memory::desc src_md, dst_md;
  dnnl::memory weights, bias;
  dnnl::stream stream{cpu_engine()};
  std::string impl_name;
};

OnednnConv::OnednnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnConv::~OnednnConv() = default;

Expected<std::unique_ptr<OnednnConv>> OnednnConv::create(const Node& node, const Tensor& weight,
                                                         const Tensor* bias,
                                                         const Shape& input_shape,
                                                         const Shape& output_shape,
                                                         FusedActivation activation) {
  using dnnl::memory;
  using tag = memory::format_tag;
  using dt = memory::data_type;
  if (weight.dtype() != DType::kFloat32 || (bias && bias->dtype() != DType::kFloat32)) {
    return unsupported(node.label(), ": oneDNN path needs float32 weights");
  }
  const Shape& ws = weight.shape();
  QYOLO_ASSIGN_OR_RETURN(ops::Window2d win,
                         ops::resolve_window(node, input_shape[2], input_shape[3], ws[2], ws[3]));
  const int64_t group = node.get_int("group", 1);
  try {
    auto impl = std::make_unique<Impl>();
    dnnl::engine& engine = cpu_engine();
    memory::dims src_dims(input_shape.begin(), input_shape.end());
    memory::dims dst_dims(output_shape.begin(), output_shape.end());
    memory::dims w_dims = group == 1 ? memory::dims{ws[0], ws[1], ws[2], ws[3]}
                                     : memory::dims{group, ws[0] / group, ws[1], ws[2], ws[3]};
    impl->src_md = memory::desc(src_dims, dt::f32, tag::nhwc);
    impl->dst_md = memory::desc(dst_dims, dt::f32, tag::nhwc);
    memory::desc w_any(w_dims, dt::f32, tag::any);
    memory::desc b_md({ws[0]}, dt::f32, tag::x);
    const memory::dims strides{win.stride_h, win.stride_w};
    const memory::dims dilates{win.dilation_h - 1, win.dilation_w - 1};
    const memory::dims pad_l{win.pad_top, win.pad_left};
    const memory::dims pad_r{win.pad_bottom, win.pad_right};
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference,
                                         dnnl::algorithm::convolution_direct, impl->src_md, w_any,
                                         b_md, impl->dst_md, strides, dilates, pad_l, pad_r);
    dnnl::primitive_attr attr;
    dnnl::post_ops post;
    if (activation == FusedActivation::kSilu) {
      post.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.0f, 0.0f);
    } else if (activation == FusedActivation::kSigmoid) {
      post.append_eltwise(1.0f, dnnl::algorithm::eltwise_logistic, 0.0f, 0.0f);
    }
    attr.set_post_ops(post);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
    impl->impl_name = pd.impl_info_str();
    impl->primitive = dnnl::convolution_forward(pd);

    // Reorder weights once from OIHW (or GOIHW) into the primitive's layout.
    memory::desc w_plain(w_dims, dt::f32, group == 1 ? tag::oihw : tag::goihw);
    memory w_src(w_plain, engine, const_cast<void*>(weight.raw()));
    impl->weights = memory(pd.weights_desc(), engine);
    dnnl::reorder(w_src, impl->weights).execute(impl->stream, w_src, impl->weights);
    impl->bias = memory(b_md, engine);
    float* b = static_cast<float*>(impl->bias.get_data_handle());
    for (int64_t c = 0; c < ws[0]; ++c) b[c] = bias ? bias->data<float>()[c] : 0.0f;
    impl->stream.wait();
    return std::unique_ptr<OnednnConv>(new OnednnConv(std::move(impl)));
  } catch (const dnnl::error& e) {
    return unsupported(node.label(), ": oneDNN cannot run this convolution (", e.what(), ")");
  }
}

Status OnednnConv::run(const Tensor& input, Tensor& output) {
  try {
    dnnl::engine& engine = cpu_engine();
    dnnl::memory src(impl_->src_md, engine, const_cast<void*>(input.raw()));
    dnnl::memory dst(impl_->dst_md, engine, output.raw());
    impl_->primitive.execute(impl_->stream, {{DNNL_ARG_SRC, src},
                                             {DNNL_ARG_WEIGHTS, impl_->weights},
                                             {DNNL_ARG_BIAS, impl_->bias},
                                             {DNNL_ARG_DST, dst}});
    impl_->stream.wait();
  } catch (const dnnl::error& e) {
    return internal_error("oneDNN convolution failed: ", e.what());
  }
  return Status::ok();
}

const char* OnednnConv::implementation() const { return impl_->impl_name.c_str(); }

}  // namespace qyolo::cpu
