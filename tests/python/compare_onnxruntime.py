"""Runs a model through `qyolo infer` and onnxruntime (CPU) on letterboxed COCO images and
checks max|qyolo - ort| / max|ort| on every output.

usage: compare_onnxruntime.py --qyolo BIN --model M.onnx --images DIR [--count N] [--tol 1e-4]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image


def letterbox(path, size):
    """Long side to `size`, centered on 114 gray, as a 1x3xSxS float32 in [0, 1]."""
    image = Image.open(path).convert("RGB")
    ratio = size / max(image.width, image.height)
    w, h = round(image.width * ratio), round(image.height * ratio)
    image = image.resize((w, h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(image, ((size - w) // 2, (size - h) // 2))
    x = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--qyolo", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    input_meta = session.get_inputs()[0]
    size = input_meta.shape[-1]
    names = sorted(f for f in os.listdir(args.images) if f.lower().endswith((".jpg", ".png")))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names[: args.count]:
            x = letterbox(os.path.join(args.images, name), size)
            np.save(os.path.join(tmp, "x.npy"), x)
            out_dir = os.path.join(tmp, "out")
            subprocess.run([args.qyolo, "infer", "--onnx", args.model, "--input",
                            os.path.join(tmp, "x.npy"), "--output-dir", out_dir],
                           check=True, stdout=subprocess.DEVNULL)
            expected = session.run(None, {input_meta.name: x})
            for meta, ref in zip(session.get_outputs(), expected):
                got = np.load(os.path.join(out_dir, meta.name + ".npy"))
                if got.shape != ref.shape:
                    print(f"{name}: {meta.name} shape {got.shape} != {ref.shape}")
                    return 1
                err = float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())
                worst = max(worst, err)
                print(f"{name}: {meta.name} {ref.shape} max|qyolo-ort|/max|ort| = {err:.3g}")
    print(f"worst {worst:.3g} (tolerance {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
