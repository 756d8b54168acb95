// YOLOv5 v7.0's detection loss, transcribed from ultralytics' utils/loss.py (ComputeLoss,
// build_targets) and utils/metrics.py (bbox_iou with CIoU=True) op for op, so the numbers
// match the Python to float rounding (tests/python/yolo_loss_oracle.py runs the original).
// Only the configuration qyolo trains with is here: no focal loss (fl_gamma 0), no
// autobalance, gr = 1, BCE pos_weight 1.
#include <cmath>

#include "qat/qat_internal.h"
#include "qyolo/vision.h"

namespace qyolo {
namespace {

using torch::indexing::Ellipsis;
using torch::indexing::Slice;

// bbox_iou(box1, box2, xywh=True, CIoU=True): boxes n x 4 as cx, cy, w, h.
torch::Tensor complete_iou(const torch::Tensor& box1, const torch::Tensor& box2) {
  constexpr double kEps = 1e-7;
  const auto a = box1.chunk(4, -1), b = box2.chunk(4, -1);
  const torch::Tensor &x1 = a[0], &y1 = a[1], &w1 = a[2], &h1 = a[3];
  const torch::Tensor &x2 = b[0], &y2 = b[1], &w2 = b[2], &h2 = b[3];
  const torch::Tensor w1_ = w1 / 2, h1_ = h1 / 2, w2_ = w2 / 2, h2_ = h2 / 2;
  const torch::Tensor b1_x1 = x1 - w1_, b1_x2 = x1 + w1_, b1_y1 = y1 - h1_, b1_y2 = y1 + h1_;
  const torch::Tensor b2_x1 = x2 - w2_, b2_x2 = x2 + w2_, b2_y1 = y2 - h2_, b2_y2 = y2 + h2_;
  const torch::Tensor inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) *
                              (b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp(0);
  const torch::Tensor uni = w1 * h1 + w2 * h2 - inter + kEps;
  const torch::Tensor iou = inter / uni;
  const torch::Tensor cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1);  // enclosing box
  const torch::Tensor ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1);
  const torch::Tensor c2 = cw.pow(2) + ch.pow(2) + kEps;
  const torch::Tensor rho2 =
      ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4;
  const torch::Tensor v =
      (4 / (M_PI * M_PI)) * (torch::atan(w2 / h2) - torch::atan(w1 / h1)).pow(2);
  torch::Tensor alpha;
  {
    torch::NoGradGuard no_grad;
    alpha = v / (v - iou + (1 + kEps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

struct HeadTargets {
  torch::Tensor cls;                    // class per matched target
  torch::Tensor box;                    // x, y offsets in the cell and w, h, in grid units
  torch::Tensor image, anchor, gj, gi;  // where each target is predicted
  torch::Tensor anchor_wh;              // its anchor, grid units
};

// ComputeLoss.build_targets: each target goes to every anchor whose shape is within
// anchor_t of it, in its own cell and the two neighbouring cells nearest to its centre.
std::vector<HeadTargets> build_targets(const std::vector<torch::Tensor>& heads,
                                       const torch::Tensor& targets, const torch::Tensor& anchors,
                                       double anchor_t) {
  const int64_t na = anchors.size(1), nt = targets.size(0);
  const auto options = targets.options();
  torch::Tensor gain = torch::ones({7}, options);
  const torch::Tensor ai = torch::arange(na, options).view({na, 1}).repeat({1, nt});
  const torch::Tensor all = torch::cat({targets.repeat({na, 1, 1}), ai.unsqueeze(-1)}, 2);
  constexpr double g = 0.5;
  const torch::Tensor off =
      torch::tensor({0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f, -1.0f, 0.0f, 0.0f, -1.0f}, options)
          .view({5, 2}) *
      g;
  std::vector<HeadTargets> result;
  for (size_t i = 0; i < heads.size(); ++i) {
    const torch::Tensor head_anchors = anchors[static_cast<int64_t>(i)];
    const int64_t height = heads[i].size(2), width = heads[i].size(3);
    gain.index_put_({Slice(2, 6)},
                    torch::tensor({static_cast<float>(width), static_cast<float>(height),
                                   static_cast<float>(width), static_cast<float>(height)},
                                  options));
    torch::Tensor t = all * gain;
    torch::Tensor offsets;
    if (nt) {
      const torch::Tensor r = t.index({Ellipsis, Slice(4, 6)}) / head_anchors.unsqueeze(1);
      const torch::Tensor match = std::get<0>(torch::max(r, 1 / r).max(2)) < anchor_t;
      t = t.index({match});
      const torch::Tensor gxy = t.index({Slice(), Slice(2, 4)});
      const torch::Tensor gxi = gain.index({torch::tensor({2, 3})}) - gxy;
      // Python's % on floats is torch.remainder.
      const torch::Tensor jk = ((gxy.remainder(1) < g) & (gxy > 1)).t();
      const torch::Tensor lm = ((gxi.remainder(1) < g) & (gxi > 1)).t();
      const torch::Tensor cells =
          torch::stack({torch::ones_like(jk[0]), jk[0], jk[1], lm[0], lm[1]});
      t = t.repeat({5, 1, 1}).index({cells});
      offsets = (torch::zeros_like(gxy).unsqueeze(0) + off.unsqueeze(1)).index({cells});
    } else {
      t = all[0];
      offsets = torch::zeros({}, options);
    }
    const auto parts = t.chunk(4, 1);  // (image, class), grid xy, grid wh, anchor
    const torch::Tensor &bc = parts[0], &gxy = parts[1], &gwh = parts[2];
    HeadTargets h;
    h.anchor = parts[3].to(torch::kLong).view(-1);
    h.image = bc.index({Slice(), 0}).to(torch::kLong);
    h.cls = bc.index({Slice(), 1}).to(torch::kLong);
    const torch::Tensor gij = (gxy - offsets).to(torch::kLong);
    // As in ultralytics, gi and gj are views of gij clamped in place, so the box offsets
    // below are taken from the clamped cells.
    h.gi = gij.index({Slice(), 0}).clamp_(0, width - 1);
    h.gj = gij.index({Slice(), 1}).clamp_(0, height - 1);
    h.box = torch::cat({gxy - gij, gwh}, 1);
    h.anchor_wh = head_anchors.index({h.anchor});
    result.push_back(std::move(h));
  }
  return result;
}

torch::Tensor bce_with_logits(const torch::Tensor& logits, const torch::Tensor& target) {
  // nn.BCEWithLogitsLoss(pos_weight=tensor([1.0])): the pos_weight formula, as ultralytics.
  return torch::binary_cross_entropy_with_logits(logits, target, {},
                                                 torch::ones({1}, logits.options()));
}

}  // namespace

DetectionLossHyp detection_loss_gains(DetectionLossHyp hyp, int num_heads, int num_classes,
                                      int image_size) {
  const double layers = 3.0 / num_heads;
  hyp.box *= layers;
  hyp.cls *= num_classes / 80.0 * layers;
  hyp.obj *= (image_size / 640.0) * (image_size / 640.0) * layers;
  return hyp;
}

DetectionLoss detection_loss(const std::vector<torch::Tensor>& heads, const torch::Tensor& targets,
                             const torch::Tensor& anchors, const DetectionLossHyp& hyp) {
  const auto options = heads.at(0).options();
  const int64_t nc = heads[0].size(4) - 5;
  // smooth_BCE(eps): positive and negative class targets.
  const double cp = 1.0 - 0.5 * hyp.label_smoothing, cn = 0.5 * hyp.label_smoothing;
  torch::Tensor lcls = torch::zeros({1}, options);
  torch::Tensor lbox = torch::zeros({1}, options);
  torch::Tensor lobj = torch::zeros({1}, options);
  const std::vector<HeadTargets> matched =
      build_targets(heads, targets.to(options.dtype()), anchors.to(options), hyp.anchor_t);
  for (size_t i = 0; i < heads.size(); ++i) {
    const torch::Tensor& pi = heads[i];
    const HeadTargets& t = matched[i];
    torch::Tensor tobj = torch::zeros({pi.size(0), pi.size(1), pi.size(2), pi.size(3)}, options);
    const int64_t n = t.image.size(0);
    if (n) {
      const torch::Tensor ps = pi.index({t.image, t.anchor, t.gj, t.gi});
      const auto split = ps.split_with_sizes({2, 2, 1, nc}, 1);
      const torch::Tensor pxy = split[0].sigmoid() * 2 - 0.5;
      const torch::Tensor pwh = (split[1].sigmoid() * 2).pow(2) * t.anchor_wh;
      const torch::Tensor pbox = torch::cat({pxy, pwh}, 1);
      torch::Tensor iou = complete_iou(pbox, t.box).squeeze();
      lbox += (1.0 - iou).mean();
      iou = iou.detach().clamp(0).to(tobj.dtype());
      tobj.index_put_({t.image, t.anchor, t.gj, t.gi}, iou);  // gr = 1: the IoU itself
      if (nc > 1) {
        torch::Tensor target = torch::full_like(split[3], cn);
        target.index_put_({torch::arange(n, torch::kLong), t.cls}, cp);
        lcls += bce_with_logits(split[3], target);
      }
    }
    const double balance = i < hyp.balance.size() ? hyp.balance[i] : 0.0;
    lobj += bce_with_logits(pi.index({Ellipsis, 4}), tobj) * balance;
  }
  lbox *= hyp.box;
  lobj *= hyp.obj;
  lcls *= hyp.cls;
  const int64_t batch = heads.back().size(0);
  return {(lbox + lobj + lcls) * batch, lbox, lobj, lcls};
}

torch::Tensor detect_layout(const torch::Tensor& head, int64_t num_anchors) {
  const int64_t n = head.size(0), h = head.size(2), w = head.size(3);
  return head.view({n, num_anchors, head.size(1) / num_anchors, h, w})
      .permute({0, 1, 3, 4, 2})
      .contiguous();
}

torch::Tensor default_grid_anchors(const torch::TensorOptions& options) {
  const HeadAnchors standard;
  std::vector<float> values;
  for (size_t i = 0; i < 3; ++i)
    for (float a : standard.anchors[i]) values.push_back(a / standard.strides[i]);
  return torch::tensor(values, options.dtype(torch::kFloat32)).view({3, 3, 2}).to(options);
}

}  // namespace qyolo
