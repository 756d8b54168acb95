"""Runs a QAT model (QuantizeLinear/DequantizeLinear as fake quantization) through `qyolo infer`
and onnxruntime on letterboxed COCO images, and compares them statistically.

Exact agreement is not expected: a float difference of 1e-6 before a QuantizeLinear (another
summation order in a convolution) moves a value across a rounding boundary, one quantization
step, and that spreads through the later layers. So the check is on the mean and the 99th
percentile of |qyolo - ort| / max|ort|, next to how far the QAT model is from its float model
(--float), which shows the size of quantization noise itself.

usage: compare_qat.py --qyolo BIN --model QAT.onnx --images DIR [--float F.onnx] [--count N]
                      [--mean-tol 1e-3] [--p99-tol 1e-2]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

from compare_onnxruntime import letterbox


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--qyolo", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--float", dest="float_model")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--mean-tol", type=float, default=1e-3)
    parser.add_argument("--p99-tol", type=float, default=1e-2)
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    reference = None
    if args.float_model:
        reference = ort.InferenceSession(args.float_model, providers=["CPUExecutionProvider"])
    input_meta = session.get_inputs()[0]
    size = input_meta.shape[-1]
    names = sorted(f for f in os.listdir(args.images) if f.lower().endswith((".jpg", ".png")))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in names[: args.count]:
            x = letterbox(os.path.join(args.images, name), size)
            np.save(os.path.join(tmp, "x.npy"), x)
            out_dir = os.path.join(tmp, "out")
            subprocess.run([args.qyolo, "infer", "--onnx", args.model, "--input",
                            os.path.join(tmp, "x.npy"), "--output-dir", out_dir],
                           check=True, stdout=subprocess.DEVNULL)
            expected = session.run(None, {input_meta.name: x})
            floats = reference.run(None, {input_meta.name: x}) if reference else [None] * len(expected)
            for meta, ref, flt in zip(session.get_outputs(), expected, floats):
                got = np.load(os.path.join(out_dir, meta.name + ".npy"))
                if got.shape != ref.shape:
                    print(f"{name}: {meta.name} shape {got.shape} != {ref.shape}")
                    return 1
                rel = np.abs(got.astype(np.float64) - ref) / np.abs(ref).max()
                mean, p99 = float(rel.mean()), float(np.percentile(rel, 99))
                line = f"{name}: {meta.name} qyolo vs onnxruntime: mean {mean:.3g}, p99 {p99:.3g}"
                if flt is not None:
                    noise = np.abs(ref.astype(np.float64) - flt) / np.abs(flt).max()
                    line += (f"; QAT vs float: mean {float(noise.mean()):.3g}, "
                             f"p99 {float(np.percentile(noise, 99)):.3g}")
                print(line)
                ok = ok and mean <= args.mean_tol and p99 <= args.p99_tol
    print("ok" if ok else f"over tolerance (mean {args.mean_tol:g}, p99 {args.p99_tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
