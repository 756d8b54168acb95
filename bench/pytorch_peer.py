#!/usr/bin/env python3
"""The PyTorch peer for qyolo's GPU benchmarks: YOLOv5 v7.0 in FP16, timed the ways people run it.

Builds the YOLOv5 v7.0 network (Conv+SiLU, C3, SPPF, Detect with its decode, BatchNorm folded, as
ultralytics' `fuse()` leaves it) in plain PyTorch with the weights of an ONNX export (yolov5n.onnx,
or the yolov5s that bench/make_yolov5s.py makes), checks it against onnxruntime in FP32 on the CPU,
then times FP16 inference on the GPU:

  eager          model.half(), NCHW
  channels_last  model.half() in channels_last memory format
  cuda_graph     channels_last, the forward captured once into a CUDA graph and replayed
  compile        torch.compile(mode="reduce-overhead") on the channels_last model

for each batch size, and prints images/s (and the batch-1 latency) with the best mode marked:
the denominator qyolo's engine is compared with. `--json` writes every number.

    python bench/pytorch_peer.py --onnx yolov5s.onnx --batch 1 32 64 --json peer.json
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = [8, 16, 32]


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=True)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, c1, c2, n, shortcut=True):
        super().__init__()
        c = c2 // 2
        self.cv1 = Conv(c1, c, 1)
        self.cv2 = Conv(c1, c, 1)
        self.cv3 = Conv(2 * c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c = c1 // 2
        self.cv1 = Conv(c1, c, 1)
        self.cv2 = Conv(4 * c, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detect(nn.Module):
    def __init__(self, channels, nc=80):
        super().__init__()
        self.no, self.na = nc + 5, 3
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.grids = {}

    def grid(self, i, ny, nx, like):
        key = (i, ny, nx, like.dtype, like.device)
        if key not in self.grids:
            y, x = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
            grid = torch.stack((x, y), 2).view(1, 1, ny, nx, 2).float() - 0.5
            anchor = torch.tensor(ANCHORS[i], dtype=torch.float32).view(1, 3, 1, 1, 2)
            self.grids[key] = (grid.to(like), anchor.to(like))
        return self.grids[key]

    def forward(self, xs):
        out = []
        for i, x in enumerate(xs):
            x = self.m[i](x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor = self.grid(i, ny, nx, x)
            xy, wh, conf = x.sigmoid().split((2, 2, self.no - 4), 4)
            xy = (xy * 2 + grid) * STRIDES[i]
            wh = (wh * 2) ** 2 * anchor
            out.append(torch.cat((xy, wh, conf), 4).view(bs, -1, self.no))
        return torch.cat(out, 1)


class YOLOv5(nn.Module):
    """ultralytics v7.0's yolov5*.yaml at depth 0.33 (n and s) and the given width."""

    def __init__(self, width):
        super().__init__()
        w = lambda c: int(math.ceil(c * width / 8) * 8)  # noqa: E731
        self.model = nn.ModuleList([
            Conv(3, w(64), 6, 2, 2), Conv(w(64), w(128), 3, 2), C3(w(128), w(128), 1),
            Conv(w(128), w(256), 3, 2), C3(w(256), w(256), 2), Conv(w(256), w(512), 3, 2),
            C3(w(512), w(512), 3), Conv(w(512), w(1024), 3, 2), C3(w(1024), w(1024), 1),
            SPPF(w(1024), w(1024)), Conv(w(1024), w(512), 1), nn.Upsample(None, 2, "nearest"),
            nn.Identity(), C3(w(1024), w(512), 1, False), Conv(w(512), w(256), 1),
            nn.Upsample(None, 2, "nearest"), nn.Identity(), C3(w(512), w(256), 1, False),
            Conv(w(256), w(256), 3, 2), nn.Identity(), C3(w(512), w(512), 1, False),
            Conv(w(512), w(512), 3, 2), nn.Identity(), C3(w(1024), w(1024), 1, False),
            Detect([w(256), w(512), w(1024)]),
        ])

    def forward(self, x):
        m = self.model
        saved = {}
        for i in range(10):
            x = m[i](x)
            saved[i] = x
        p10 = m[10](x)
        x = m[13](torch.cat((m[11](p10), saved[6]), 1))
        p14 = m[14](x)
        p17 = m[17](torch.cat((m[15](p14), saved[4]), 1))
        p20 = m[20](torch.cat((m[18](p17), p14), 1))
        p23 = m[23](torch.cat((m[21](p20), p10), 1))
        return m[24]([p17, p20, p23])


def load_from_onnx(path):
    import onnx
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    stem = weights["model.0.conv.weight"].shape[0]
    model = YOLOv5(width=stem / 64)
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        sys.exit(f"pytorch_peer: {path} has no initializer {missing[0]} (not a YOLOv5 v7.0 export?)")
    model.load_state_dict({k: torch.from_numpy(weights[k].copy()) for k in state})
    return model.eval()


def check_against_onnxruntime(model, path, size):
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
    print(f"check: PyTorch FP32 vs onnxruntime on {path}: max rel. diff {diff:.2e}", flush=True)
    if diff > 1e-4:
        sys.exit("pytorch_peer: the PyTorch model does not reproduce the ONNX export")


def timed(run, batch, warmup_s, duration_s):
    """Images/s and per-iteration latencies (ms) of `run`, after a warm-up."""
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        run()
    torch.cuda.synchronize()
    latencies = []
    start_all = time.perf_counter()
    while time.perf_counter() - start_all < duration_s or len(latencies) < 10:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        stop.synchronize()
        latencies.append(start.elapsed_time(stop))
    total = sum(latencies) / 1000.0
    return batch * len(latencies) / total, latencies


def bench(model, mode, batch, size, warmup_s, duration_s):
    device = torch.device("cuda")
    net = model.to(device).half()
    x = torch.rand(batch, 3, size, size, device=device).half()
    if mode != "eager":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if mode in ("eager", "channels_last"):
            return timed(lambda: net(x), batch, warmup_s, duration_s)
        if mode == "cuda_graph":
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    net(x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                net(x)
            return timed(graph.replay, batch, warmup_s, duration_s)
        if mode == "compile":
            compiled = torch.compile(net, mode="reduce-overhead")
            for _ in range(3):
                compiled(x)
            return timed(lambda: compiled(x), batch, warmup_s, duration_s)
    raise ValueError(mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", help="YOLOv5 v7.0 export whose weights to use")
    parser.add_argument("--width", type=float, help="no ONNX: random weights at this width "
                        "(0.25 yolov5n, 0.50 yolov5s), for timing only")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 64])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--modes", nargs="+", default=["eager", "channels_last", "cuda_graph", "compile"])
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds")
    parser.add_argument("--json")
    args = parser.parse_args()

    if args.onnx:
        model = load_from_onnx(args.onnx)
        check_against_onnxruntime(model, args.onnx, args.imgsz)
    elif args.width:
        torch.manual_seed(0)
        model = YOLOv5(args.width).eval()
    else:
        sys.exit("pytorch_peer: give --onnx or --width")
    torch.backends.cudnn.benchmark = True
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "model": args.onnx or f"width {args.width}", "imgsz": args.imgsz, "results": []}
    print(f"device {info['device']}, torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}")
    print(f"{'batch':>5} {'mode':>14} {'img/s':>10} {'median ms':>10} {'min ms':>8}")
    for batch in args.batch:
        best = None
        for mode in args.modes:
            try:
                rate, lat = bench(model, mode, batch, args.imgsz, args.warmup, args.duration)
            except Exception as error:  # a mode that fails here is reported, not fatal
                print(f"{batch:>5} {mode:>14} failed: {str(error).splitlines()[0][:80]}", flush=True)
                continue
            row = {"batch": batch, "mode": mode, "images_per_s": rate,
                   "median_ms": float(np.median(lat)), "min_ms": float(np.min(lat))}
            info["results"].append(row)
            print(f"{batch:>5} {mode:>14} {rate:>10.0f} {row['median_ms']:>10.3f} {row['min_ms']:>8.3f}",
                  flush=True)
            if best is None or rate > best["images_per_s"]:
                best = row
        if best:
            best["best"] = True
            print(f"{batch:>5} {'best: ' + best['mode']:>14} {best['images_per_s']:>10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
