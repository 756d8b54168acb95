#!/usr/bin/env python3
"""The work of detect's class NMS (src/kernels/cuda/ops/detect_nms.cu), counted on the CPU.

Runs yolov5n (FP32, onnxruntime) on val2017-mini, takes the candidates as detect does (conf
0.001, multi-label, score = obj * cls, sorted by score then index, the best 30,000), and replays
nms_classes_kernel's walk class by class: small classes (at most 128 candidates) one warp each,
large ones a block each in tiles of 256 open boxes (the pairwise IoU bits, the greedy pass,
then step 4: every later open box of the class tested against the tile's kept boxes until one
suppresses it), the early stop (max_det kept boxes ranked before the class's next box), and the
large classes dealt round robin to 8 blocks an image. It prints what bounds the kernel's time:
per image the busiest block's tiles, greedy steps and step-4 IoU tests, and over all images the
distribution of tiles per large class and of kept boxes per tile.

    python bench/cuda_ops/nms_workload.py [--data ../shared/data] [--parts 8]

Needs onnxruntime, numpy and Pillow (the test virtualenv has them). The letterbox is a plain
bilinear resize, not qyolo's, so the counts are close to, not equal to, the GPU's.
"""
import argparse
import glob
import os

import numpy as np
from PIL import Image

CONF, IOU, MAX_NMS, MAX_DET, MAX_WH = 0.001, 0.6, 30000, 300, 7680.0
SMALL, TILE = 128, 256


def letterbox(path, size=640):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    g = size / max(w, h)
    nw, nh = round(w * g), round(h * g)
    im = im.resize((nw, nh), Image.BILINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = np.asarray(im)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255


def candidates(out):
    """(boxes with the class offset, classes, ranks) of the best MAX_NMS candidates in score order."""
    obj = out[:, 4:5]
    scores = out[:, 5:] * obj
    rows, cls = np.nonzero((scores > CONF) & (obj > CONF))
    s = scores[rows, cls]
    order = np.lexsort((rows * 80 + cls, -s))[:MAX_NMS]  # score descending, then index
    rows, cls = rows[order], cls[order]
    xy, wh = out[rows, :2], out[rows, 2:4]
    off = (cls * MAX_WH)[:, None]
    boxes = np.concatenate([xy - wh / 2 + off, xy + wh / 2 + off], axis=1)
    return boxes, cls


def iou_matrix(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def greedy_kept(boxes):
    """Ranks (positions) the plain greedy NMS keeps, for the early stop's final kept set."""
    kept, removed = [], np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if removed[i]:
            continue
        kept.append(i)
        if len(kept) == MAX_DET:
            break
        removed[i + 1:] |= iou_matrix(boxes[i:i + 1], boxes[i + 1:])[0] > IOU
    return kept


def large_class_walk(boxes, ranks, kept_ranks_sorted):
    """One large class's tile walk: (tiles, greedy steps, step-4 IoU tests, kept per tile)."""
    k = len(boxes)
    suppressed = np.zeros(k, bool)
    cursor = kept_here = tiles = steps = tests = 0
    kept_per_tile = []
    while kept_here < MAX_DET and cursor < k:
        if cursor > 0 and np.searchsorted(kept_ranks_sorted, ranks[cursor]) >= MAX_DET:
            break  # the early stop
        open_ = np.nonzero(~suppressed[cursor:])[0][:TILE] + cursor
        if len(open_) == 0:
            break
        tiles += 1
        steps += len(open_)
        tile = boxes[open_]
        over = iou_matrix(tile, tile) > IOU
        removed = np.zeros(len(open_), bool)
        kept = []
        for i in range(len(open_)):
            if removed[i] or kept_here + len(kept) >= MAX_DET:
                continue
            kept.append(i)
            removed[i + 1:] |= over[i, i + 1:]
        kept_here += len(kept)
        kept_per_tile.append(len(kept))
        cursor = open_[-1] + 1
        if kept_here < MAX_DET and cursor < k:
            later = np.nonzero(~suppressed[cursor:])[0] + cursor
            hits = iou_matrix(boxes[later], tile[kept]) > IOU  # later x kept, in kept order
            first = np.where(hits.any(1), hits.argmax(1) + 1, len(kept))
            tests += int(first.sum())
            suppressed[later[hits.any(1)]] = True
    return tiles, steps, tests, kept_per_tile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("QYOLO_DATA", "../shared/data"))
    ap.add_argument("--parts", type=int, default=8)
    args = ap.parse_args()
    import onnxruntime as ort
    session = ort.InferenceSession(os.path.join(args.data, "models/yolov5n.onnx"),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = sorted(glob.glob(os.path.join(args.data, "coco/val2017-mini/images/*.jpg")))
    all_tiles, all_kept, busiest = [], [], []
    for path in images:
        out = session.run(None, {name: letterbox(path)})[0][0]
        boxes, cls = candidates(out)
        kept_ranks = np.sort([r for c in np.unique(cls)
                              for r in np.nonzero(cls == c)[0][greedy_kept(boxes[cls == c])]])
        blocks = [[0, 0, 0] for _ in range(args.parts)]  # tiles, greedy steps, step-4 tests
        ordinal = 0
        for c in np.unique(cls):
            ranks = np.nonzero(cls == c)[0]
            if len(ranks) <= SMALL:
                continue
            t, s, x, per_tile = large_class_walk(boxes[ranks], ranks, kept_ranks)
            all_tiles.append(t)
            all_kept += per_tile
            b = blocks[ordinal % args.parts]
            ordinal += 1
            b[0] += t
            b[1] += s
            b[2] += x
        busiest.append(max(blocks, key=lambda b: (b[0], b[2])))
    busiest = np.array(busiest)
    print(f"{len(images)} images, {args.parts} blocks an image")
    print("busiest block an image: tiles mean %.1f max %d; greedy steps mean %d max %d; "
          "step-4 IoU tests mean %d max %d" % (busiest[:, 0].mean(), busiest[:, 0].max(),
                                               busiest[:, 1].mean(), busiest[:, 1].max(),
                                               busiest[:, 2].mean(), busiest[:, 2].max()))
    t, k = np.array(all_tiles), np.array(all_kept)
    print("large classes: %d, tiles each: mean %.1f median %d max %d" %
          (len(t), t.mean(), np.median(t), t.max()))
    print("kept a tile: mean %.1f median %d max %d" % (k.mean(), np.median(k), k.max()))


if __name__ == "__main__":
    main()
