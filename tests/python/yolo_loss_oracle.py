"""Oracle for qyolo's QAT detection loss: ultralytics yolov5 v7.0's own ComputeLoss.

Reads head outputs p0.npy, p1.npy, p2.npy (N x 3 x H x W x 85, float32), targets.npy (M x 6:
image, class, x, y, w, h normalised) and anchors.npy (3 x 3 x 2, grid units) from --dir,
builds ComputeLoss with hyp.scratch-low.yaml's hyperparameters scaled as train.py scales them
for --imgsz, and writes loss.json ({"box", "obj", "cls", "total"}) and the gradient of the
total with respect to each head, grad0.npy .. grad2.npy.

yolov5 (PyPI yolov5==7.0.14) is installed with --no-deps: importing its package pulls in its
whole training stack (cv2, pandas, yaml, ...), so only utils/loss.py and utils/metrics.py are
loaded, from the installed files. torch_utils, which loss.py imports for de_parallel alone,
is replaced by that one function (the stand-in model here is never parallel), and
matplotlib.pyplot, which metrics.py imports for its plots, by an empty module when absent.

Exit code 77 (and one line on stderr) when torch or yolov5 is not installed.
"""

import argparse
import importlib.util
import json
import pathlib
import sys
import types


def load_compute_loss():
    spec = importlib.util.find_spec("yolov5")
    if spec is None or spec.origin is None:
        raise ImportError("yolov5 is not installed (pip install --no-deps yolov5==7.0.14)")
    root = pathlib.Path(spec.origin).parent
    package = types.ModuleType("yolov5")
    package.__path__ = [str(root)]  # the package without running its __init__
    sys.modules["yolov5"] = package
    import yolov5.utils  # noqa: F401  (contextlib, platform, threading only)

    torch_utils = types.ModuleType("yolov5.utils.torch_utils")
    torch_utils.de_parallel = lambda model: model
    sys.modules["yolov5.utils.torch_utils"] = torch_utils
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        sys.modules["matplotlib"] = types.ModuleType("matplotlib")
        sys.modules["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
    loss = importlib.import_module("yolov5.utils.loss")
    return loss.ComputeLoss, root


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    args = parser.parse_args()
    try:
        import numpy as np
        import torch
        ComputeLoss, root = load_compute_loss()
    except ImportError as error:
        print(f"oracle unavailable: {error}", file=sys.stderr)
        return 77

    folder = pathlib.Path(args.dir)
    heads = [torch.from_numpy(np.load(folder / f"p{i}.npy")).requires_grad_(True) for i in range(3)]
    targets = torch.from_numpy(np.load(folder / "targets.npy"))
    anchors = torch.from_numpy(np.load(folder / "anchors.npy"))

    # data/hyps/hyp.scratch-low.yaml (the loss part), scaled as train.py does.
    nl, nc, imgsz = 3, 80, args.imgsz
    hyp = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "iou_t": 0.20,
           "anchor_t": 4.0, "fl_gamma": 0.0, "label_smoothing": 0.0}
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl

    class Detect(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.na, self.nc, self.nl = 3, nc, nl
            self.stride = torch.tensor([8.0, 16.0, 32.0])
            self.register_buffer("anchors", anchors)

    class StandIn(torch.nn.Module):  # what ComputeLoss reads of a DetectionModel
        def __init__(self):
            super().__init__()
            self.model = torch.nn.ModuleList([Detect()])
            self.hyp = hyp
            self.unused = torch.nn.Parameter(torch.zeros(1))  # for next(model.parameters())

    compute_loss = ComputeLoss(StandIn())
    total, items = compute_loss(heads, targets)
    total.sum().backward()
    for i, head in enumerate(heads):
        np.save(folder / f"grad{i}.npy", head.grad.numpy())
    box, obj, cls = (float(x) for x in items)
    result = {"box": box, "obj": obj, "cls": cls, "total": float(total),
              "torch": torch.__version__, "yolov5": str(root)}
    (folder / "loss.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
