#!/usr/bin/env python3
"""pycocotools as the oracle for qyolo's COCO evaluator (used by tests/test_coco.cpp).

  coco_oracle.py generate <dir> <first_seed> <count>
      Writes <count> random evaluation cases, seeds first_seed.., as <dir>/case_<seed>_gt.json
      and <dir>/case_<seed>_dt.json, runs pycocotools' COCOeval (bbox) on each and writes
      <dir>/manifest.tsv, one tab-separated line per case:
        <name>  <12 stats, space-separated>  <per category: id:ap:ap50, space-separated>
      every float written with repr(), so it reads back bit for bit; and COCOeval's whole
      eval['precision'], eval['scores'] ([T,R,K,A,M]) and eval['recall'] ([T,K,A,M]) as
      <dir>/<name>_precision.npy, _scores.npy and _recall.npy. The summary pycocotools prints
      for the first case goes to <dir>/summary_<first_seed>.txt.

  coco_oracle.py eval <gt.json> <dt.json> [<image id>,<image id>,...]
      Prints pycocotools' 12 stats, one repr() per line; with image ids, evaluates only those
      images (params.imgIds, as ultralytics' val.py sets it).

The cases aim at the corners of COCOeval: crowd boxes, images with no ground truth or no
detections, categories without ground truth, detections on categories the ground truth does
not list, more than 100 detections on an image, tiny and huge boxes, areas on the range
boundaries, exact ties in score, ground truth with id 0 and ids used twice.
"""

import contextlib
import io
import json
import os
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def run_cocoeval(gt_path, dt_path, image_ids=None):
    """(stats, per-category [(id, ap, ap50)], printed summary, eval dict) from pycocotools."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        evaluator = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        summary_start = len(printed.getvalue())
        evaluator.summarize()
    summary = printed.getvalue()[summary_start:]
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_category = []
    for k, category_id in enumerate(evaluator.params.catIds):
        every = precision[:, :, k, 0, -1]
        at50 = precision[0, :, k, 0, -1]
        ap = float(np.mean(every[every > -1])) if (every > -1).any() else -1.0
        ap50 = float(np.mean(at50[at50 > -1])) if (at50 > -1).any() else -1.0
        per_category.append((int(category_id), ap, ap50))
    return [float(x) for x in evaluator.stats], per_category, summary, evaluator.eval


def random_box(rng, image_w, image_h):
    """A box whose size is log-uniform from sub-pixel to larger than the image."""
    w = float(np.exp(rng.uniform(np.log(0.5), np.log(2.5 * max(image_w, image_h)))))
    h = float(np.exp(rng.uniform(np.log(0.5), np.log(2.5 * max(image_w, image_h)))))
    if rng.random() < 0.3:
        h = w * rng.uniform(0.5, 2.0)  # closer to square, like real objects
    x = float(rng.uniform(-0.1 * w, image_w))
    y = float(rng.uniform(-0.1 * h, image_h))
    if rng.random() < 0.2:  # integer coordinates, as many annotation tools write them
        x, y, w, h = float(round(x)), float(round(y)), float(max(1, round(w))), \
            float(max(1, round(h)))
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def jitter(rng, box, amount):
    """A detection near a ground-truth box: IoU from about 0.3 to 1."""
    x, y, w, h = box
    dx, dy = rng.normal(0, amount * w), rng.normal(0, amount * h)
    sw, sh = np.exp(rng.normal(0, amount)), np.exp(rng.normal(0, amount))
    return [round(float(x + dx), 3), round(float(y + dy), 3), round(float(w * sw), 3),
            round(float(h * sh), 3)]


def make_case(seed):
    rng = np.random.default_rng(seed)
    num_images = int(rng.integers(1, 25))
    image_ids = [int(i) for i in rng.choice(1_000_000, size=num_images, replace=False)]
    images = []
    for image_id in image_ids:
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg",
                       "width": int(rng.integers(100, 1000)),
                       "height": int(rng.integers(100, 1000))})
    if rng.random() < 0.2:  # an image listed twice: pycocotools keeps one
        images.append(dict(images[0]))
    rng.shuffle(images)
    sizes = {image["id"]: (image["width"], image["height"]) for image in images}

    num_categories = int(rng.integers(1, 9))
    category_ids = [int(c) for c in rng.choice(np.arange(1, 91), size=num_categories,
                                               replace=False)]
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"}
                  for c in category_ids]
    rng.shuffle(categories)
    # Categories that only detections use, or that only stray annotations use.
    unlisted = [c for c in range(91, 96)]

    crowd_rate = rng.choice([0.0, 0.05, 0.2])
    annotations = []
    for image_id in image_ids:
        image_w, image_h = sizes[image_id]
        count = 0 if rng.random() < 0.2 else int(rng.integers(1, 15))
        for _ in range(count):
            category = int(rng.choice(category_ids)) if rng.random() > 0.03 \
                else int(rng.choice(unlisted))
            box = random_box(rng, image_w, image_h)
            area = box[2] * box[3]
            r = rng.random()
            if r < 0.3:
                area *= float(rng.uniform(0.4, 1.0))  # a polygon smaller than its box
            elif r < 0.4:
                area = float(rng.choice([0, 32 ** 2, 96 ** 2, 32 ** 2 + 1e-9, 96 ** 2 - 1e-9]))
            elif r < 0.45:
                area = int(round(area))
            annotations.append({"image_id": image_id, "category_id": category, "bbox": box,
                                "area": area, "iscrowd": int(rng.random() < crowd_rate),
                                "segmentation": [[box[0], box[1], box[0] + box[2], box[1]]]})
    # Stray annotations on images the file does not list.
    if rng.random() < 0.2:
        annotations.append({"image_id": 1_000_001, "category_id": category_ids[0],
                            "bbox": [1, 2, 30, 40], "area": 1200, "iscrowd": 0})
    rng.shuffle(annotations)
    ids = [int(i) for i in rng.choice(10_000_000, size=len(annotations), replace=False) + 1]
    if ids and rng.random() < 0.1:
        ids[int(rng.integers(len(ids)))] = 0  # accumulate() reads a match to id 0 as none
    if len(ids) > 2 and rng.random() < 0.1:
        ids[1] = ids[0]  # loadAnns lets the last annotation with an id stand for all
    for annotation, annotation_id in zip(annotations, ids):
        annotation["id"] = annotation_id
    gt = {"info": {"description": f"qyolo COCOeval case {seed}"}, "licenses": [],
          "images": images, "annotations": annotations, "categories": categories}

    detections = []
    score_levels = int(rng.choice([0, 3, 20]))  # 0: continuous scores
    for image_id in image_ids:
        image_w, image_h = sizes[image_id]
        truth = [a for a in annotations if a["image_id"] == image_id]
        r = rng.random()
        count = 0 if r < 0.15 else int(rng.integers(1, 30)) if r < 0.85 \
            else int(rng.integers(90, 160))
        for _ in range(count):
            if truth and rng.random() < 0.6:
                source = truth[int(rng.integers(len(truth)))]
                box = jitter(rng, source["bbox"], float(rng.choice([0.02, 0.1, 0.3])))
                category = source["category_id"] if rng.random() < 0.85 \
                    else int(rng.choice(category_ids))
            else:
                box = random_box(rng, image_w, image_h)
                category = int(rng.choice(category_ids)) if rng.random() > 0.05 \
                    else int(rng.choice(unlisted))
            score = float(rng.random())
            if score_levels:
                score = float(int(score * score_levels)) / score_levels
            detections.append({"image_id": image_id, "category_id": category, "bbox": box,
                               "score": round(score, 5)})
    rng.shuffle(detections)
    return gt, detections


def generate(out_dir, first_seed, count):
    os.makedirs(out_dir, exist_ok=True)
    lines = []
    for seed in range(first_seed, first_seed + count):
        gt, detections = make_case(seed)
        if not detections:  # loadRes cannot take an empty list; test_coco covers it
            detections = [{"image_id": gt["images"][0]["id"],
                           "category_id": gt["categories"][0]["id"],
                           "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.5}]
        name = f"case_{seed}"
        gt_path = os.path.join(out_dir, name + "_gt.json")
        dt_path = os.path.join(out_dir, name + "_dt.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(detections, f)
        stats, per_category, summary, arrays = run_cocoeval(gt_path, dt_path)
        for array in ("precision", "scores", "recall"):
            np.save(os.path.join(out_dir, f"{name}_{array}.npy"), arrays[array])
        if seed == first_seed:
            with open(os.path.join(out_dir, f"summary_{seed}.txt"), "w") as f:
                f.write(summary)
        lines.append("\t".join([
            name, " ".join(repr(x) for x in stats),
            " ".join(f"{c}:{ap!r}:{ap50!r}" for c, ap, ap50 in per_category)]))
    with open(os.path.join(out_dir, "manifest.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    if len(argv) == 5 and argv[1] == "generate":
        generate(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) in (4, 5) and argv[1] == "eval":
        image_ids = [int(i) for i in argv[4].split(",")] if len(argv) == 5 else None
        stats = run_cocoeval(argv[2], argv[3], image_ids)[0]
        for x in stats:
            print(repr(x))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
