"""Turns an image into a letterboxed 1x3xSxS float32 .npy (RGB, [0, 1], 114 gray padding)
for `qyolo infer`. Until `qyolo detect` reads images itself, this feeds the demo.

usage: letterbox_npy.py IMAGE OUT.npy [--size 640]
"""
import argparse

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=640)
    args = parser.parse_args()
    image = Image.open(args.image).convert("RGB")
    ratio = args.size / max(image.width, image.height)
    w, h = round(image.width * ratio), round(image.height * ratio)
    resample = Image.BILINEAR if ratio > 1 else Image.BOX
    canvas = Image.new("RGB", (args.size, args.size), (114, 114, 114))
    canvas.paste(image.resize((w, h), resample), ((args.size - w) // 2, (args.size - h) // 2))
    x = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    np.save(args.output, np.ascontiguousarray(x))
    print(f"{args.image}: {image.width}x{image.height} -> {args.output} 1x3x{args.size}x{args.size}")


if __name__ == "__main__":
    main()
