#!/usr/bin/env python3
"""Makes a yolov5s ONNX (v7.0 architecture: width 0.50, depth 0.33) from yolov5n's graph.

yolov5n and yolov5s share depth 0.33, so their graphs are the same apart from every channel
count doubling (except the 3 image channels and the 255 head outputs). Only yolov5n's weights are
at hand, so yolov5s gets weights made from them:

    W_s[o, i] = W_n[o mod O_n, src(i)] / r      b_s[o] = b_n[o mod O_n]

where src(i) is the yolov5n channel that yolov5s input channel i holds (a convolution's output
channel o holds o mod O_n; Concat concatenates its inputs' maps, offset as in yolov5n; the element-wise ops, MaxPool and
Resize keep them) and r = 2 where the input doubled, else 1.

With these, every yolov5s activation is yolov5n's with each channel repeated twice, so the
model detects exactly what yolov5n detects (the same mAP: a check on any engine that runs it),
and its activation ranges are those of a trained network, not of random weights, which matters
for INT8 calibration and for SiLU. `--noise` adds Gaussian noise (relative to each tensor's
standard deviation, seeded) to break the symmetry when a truly different model is wanted.

    python bench/make_yolov5s.py ../shared/data/models/yolov5n.onnx yolov5s.onnx [--noise 0.05]

Checks the result's convolution shapes against yolov5_conv_shapes_640.json when given
(--shapes), and with --check runs both models in onnxruntime on one random input (noise 0:
outputs equal to float32 rounding).
"""
import argparse
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def widen(model, noise, seed):
    rng = np.random.default_rng(seed)
    init = {t.name: t for t in model.graph.initializer}
    # Which yolov5n channel each yolov5s channel of a tensor holds; the image keeps its three.
    src = {i.name: np.arange(3) for i in model.graph.input}
    for node in model.graph.node:
        if node.op_type == "Concat" and all(i in src for i in node.input):
            # yolov5n's Concat puts input k at channel offset sum(C_n of inputs before k).
            offsets = np.cumsum([0] + [src[i].max() + 1 for i in node.input[:-1]])
            src[node.output[0]] = np.concatenate([src[i] + o for i, o in zip(node.input, offsets)])
            continue
        if node.op_type != "Conv":
            if node.input and node.input[0] in src and node.op_type not in ("Reshape", "Split"):
                src[node.output[0]] = src[node.input[0]]
            continue
        w_name = node.input[1]
        w = numpy_helper.to_array(init[w_name])
        out_n, in_n = w.shape[0], w.shape[1]
        out_s = out_n if out_n == 255 else 2 * out_n
        rows = np.arange(out_s) % out_n
        cols = src[node.input[0]]
        w_s = w[rows][:, cols] / (len(cols) // in_n)
        src[node.output[0]] = rows
        if noise > 0:
            w_s = w_s + rng.normal(0.0, noise * float(w.std()), w_s.shape)
        init[w_name].CopyFrom(numpy_helper.from_array(w_s.astype(np.float32), w_name))
        if len(node.input) > 2:
            b_name = node.input[2]
            b = numpy_helper.to_array(init[b_name])
            b_s = b[rows]
            if noise > 0:
                b_s = b_s + rng.normal(0.0, noise * float(b.std()), b_s.shape)
            init[b_name].CopyFrom(numpy_helper.from_array(b_s.astype(np.float32), b_name))
    # Shapes recorded in the graph (value_info) are yolov5n's: drop them, keep inputs/outputs.
    del model.graph.value_info[:]
    model.doc_string = "yolov5s (v7.0 architecture) widened from yolov5n by bench/make_yolov5s.py"
    return model


def check_shapes(model, shapes_path):
    expected = {c["onnx_node"]: c for c in json.load(open(shapes_path))["yolov5s"]["convs"]}
    init = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    bad = []
    for node in convs:
        w = init[node.input[1]].dims
        want = expected.get(node.name)
        if want is None or (w[0], w[1], w[2]) != (want["cout"], want["cin"], want["k"]):
            bad.append(f"{node.name}: {list(w)} vs {want}")
    if len(convs) != len(expected) or bad:
        sys.exit(f"make_yolov5s: shapes differ from {shapes_path}: " + "; ".join(bad[:5]))
    print(f"shapes: {len(convs)} convolutions match yolov5s in {shapes_path}")


def check_outputs(small_path, large_path):
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    outs = []
    for path in (small_path, large_path):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    diff = float(np.abs(outs[0] - outs[1]).max())
    print(f"check: max |yolov5s - yolov5n| on one input = {diff:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("yolov5n")
    parser.add_argument("output")
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--shapes", help="yolov5_conv_shapes_640.json to check against")
    parser.add_argument("--check", action="store_true", help="compare outputs in onnxruntime")
    args = parser.parse_args()
    model = widen(onnx.load(args.yolov5n), args.noise, args.seed)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    print(f"wrote {args.output}")
    if args.shapes:
        check_shapes(model, args.shapes)
    if args.check:
        check_outputs(args.yolov5n, args.output)


if __name__ == "__main__":
    main()
