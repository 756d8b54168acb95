#!/usr/bin/env python3
"""Decodes a folder of images into one file of RGB pixels for e2e_cuda_engine.

Images are decoded with OpenCV (cv2.imread, then BGR -> RGB), which is what qyolo's own JPEG
and PNG decoding matches byte for byte, so the GPU pipeline sees the pixels `qyolo val` sees.
The image id is the file name's stem as an integer (COCO's naming), else its index.

Format: b"QYRGB001", uint32 count, then per image int64 id, int32 width, int32 height and
height * width * 3 bytes of RGB rows; little endian.

usage: pack_images.py <image folder> <out.rgb>
"""
import os
import struct
import sys

import cv2


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    folder, out_path = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        print(f"pack_images: no .jpg/.png images in {folder}", file=sys.stderr)
        return 1
    with open(out_path, "wb") as out:
        out.write(b"QYRGB001" + struct.pack("<I", len(names)))
        for index, name in enumerate(names):
            bgr = cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"pack_images: cannot decode {os.path.join(folder, name)}", file=sys.stderr)
                return 1
            stem = os.path.splitext(name)[0]
            image_id = int(stem) if stem.isdigit() else index
            height, width = bgr.shape[:2]
            out.write(struct.pack("<qii", image_id, width, height))
            out.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).tobytes())
    print(f"{len(names)} images -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
