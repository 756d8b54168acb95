"""Writes OpenCV's results for qyolo's vision tests, as RGB uint8 .npy files.

usage: vision_oracle.py OUT_DIR IMAGE...
For each image: <stem>_decoded.npy (cv2.imread, RGB), <stem>_linear_WxH.npy and
<stem>_area_WxH.npy (cv2.resize of the decoded image to a few sizes), and
<stem>_letterbox_640_640.npy / _640_672.npy (ultralytics v7.0's load_image + letterbox).
"""
import math
import os
import sys

import cv2
import numpy as np

SIZES = [(333, 250), (640, 427), (801, 600), (97, 61)]


def ultralytics_letterbox(bgr, size, canvas):
    h0, w0 = bgr.shape[:2]
    r = size / max(h0, w0)
    if r != 1:
        interp = cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
        bgr = cv2.resize(bgr, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
    h, w = bgr.shape[:2]
    dw, dh = (canvas - w) / 2, (canvas - h) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return cv2.copyMakeBorder(bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                              value=(114, 114, 114))


def main():
    out = sys.argv[1]
    for path in sys.argv[2:]:
        stem = os.path.splitext(os.path.basename(path))[0]
        bgr = cv2.imread(path)
        rgb = lambda im: np.ascontiguousarray(im[:, :, ::-1])
        np.save(os.path.join(out, f"{stem}_decoded.npy"), rgb(bgr))
        for w, h in SIZES:
            for name, flag in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)):
                np.save(os.path.join(out, f"{stem}_{name}_{w}x{h}.npy"),
                        rgb(cv2.resize(bgr, (w, h), interpolation=flag)))
        for size, canvas in ((640, 640), (640, 672), (320, 320)):
            np.save(os.path.join(out, f"{stem}_letterbox_{size}_{canvas}.npy"),
                    rgb(ultralytics_letterbox(bgr, size, canvas)))


if __name__ == "__main__":
    main()
