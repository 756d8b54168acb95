#!/usr/bin/env python3
"""qyolo cocoeval against pycocotools' COCOeval (bbox), side by side in one run.

For each case the script runs pycocotools in this process (load the ground truth, loadRes,
evaluate, accumulate, summarize) and `qyolo cocoeval --export-metrics` as a subprocess (the
same steps, JSON parsing included, plus process start), checks that the 12 stats are
identical, and prints the times and the speed-up as a Markdown table.

Cases:
  fake100   cocoapi's fake bbox results on 100 val2014 images (the shared data).
  coco5k    a generated val2017-sized case with a fixed seed: 5,000 images, about 36k ground
            truth boxes over the 80 COCO categories (1% crowd), and about 100 detections per
            image (at most 300) scored like a conf-0.001 detector: jittered true positives,
            class confusions and background boxes.

Usage (from the checkout, with the test virtualenv):
  .venv/bin/python bench/compare_pycocotools.py --qyolo build/qyolo [--data ../shared/data]
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

COCO91 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
          27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
          52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
          78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def generate_coco5k(gt_path, dt_path, seed=2017, num_images=5000):
    rng = np.random.default_rng(seed)
    # COCO's classes are unbalanced: person is about a quarter of all boxes.
    weights = rng.gamma(0.6, size=80)
    weights[0] = weights.sum() / 3
    weights /= weights.sum()
    images, annotations, detections = [], [], []
    next_id = 1
    for i in range(num_images):
        image_id = int(100_000 + i * 7)
        width, height = int(rng.choice([640, 480, 500, 427])), int(rng.choice([480, 640, 375]))
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width,
                       "height": height})
        truth = []
        for _ in range(int(min(rng.geometric(1 / 7.3), 60))):
            # Object sizes spread over small, medium and large about as COCO's (41/34/24 %).
            side = float(np.exp(rng.normal(np.log(45), 1.1)))
            aspect = float(np.exp(rng.normal(0, 0.5)))
            w = min(width * 0.98, side * aspect ** 0.5)
            h = min(height * 0.98, side / aspect ** 0.5)
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            box = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
            category = COCO91[int(rng.choice(80, p=weights))]
            annotations.append({"id": next_id, "image_id": image_id, "category_id": category,
                                "bbox": box, "area": round(w * h * rng.uniform(0.5, 0.9), 3),
                                "iscrowd": int(rng.random() < 0.01), "segmentation": []})
            truth.append((box, category))
            next_id += 1
        wanted = int(min(300, max(5, rng.normal(100, 40))))
        image_dets = []
        for box, category in truth:  # a few detections per object, the best scored highest
            for rank in range(int(rng.integers(1, 6))):
                jitter = 0.04 + 0.08 * rank
                x, y, w, h = box
                dx, dy = rng.normal(0, jitter * w), rng.normal(0, jitter * h)
                sw, sh = np.exp(rng.normal(0, jitter, size=2))
                det_category = category if rng.random() < 0.85 else COCO91[int(rng.integers(80))]
                score = float(rng.beta(5, 2)) if rank == 0 else float(rng.beta(1.2, 6))
                image_dets.append((det_category, [x + dx, y + dy, w * sw, h * sh], score))
        while len(image_dets) < wanted:  # background boxes at low confidence
            w = float(np.exp(rng.normal(np.log(40), 1.0)))
            h = float(np.exp(rng.normal(np.log(40), 1.0)))
            image_dets.append((COCO91[int(rng.choice(80, p=weights))],
                               [float(rng.uniform(0, width)), float(rng.uniform(0, height)), w, h],
                               float(rng.beta(1, 30))))
        image_dets.sort(key=lambda d: -d[2])
        for category, box, score in image_dets[:300]:
            detections.append({"image_id": image_id, "category_id": category,
                               "bbox": [round(float(v), 3) for v in box],
                               "score": round(max(score, 0.001), 5)})
    with open(gt_path, "w") as f:
        json.dump({"info": {"description": f"coco5k seed {seed}"}, "images": images,
                   "annotations": annotations,
                   "categories": [{"id": c, "name": str(c)} for c in COCO91]}, f)
    with open(dt_path, "w") as f:
        json.dump(detections, f)
    return len(images), len(annotations), len(detections)


def run_pycocotools(gt_path, dt_path):
    quiet = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(quiet):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return time.perf_counter() - start, [float(x) for x in evaluator.stats]


def run_qyolo(binary, gt_path, dt_path, metrics_path, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([binary, "cocoeval", "--gt", gt_path, "--dt", dt_path, "--export-metrics",
                    metrics_path], check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    with open(metrics_path) as f:
        return seconds, json.load(f)["stats"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qyolo", default="build/qyolo", help="the qyolo binary")
    parser.add_argument("--data", default=os.environ.get("QYOLO_DATA", "../shared/data"))
    parser.add_argument("--repeat", type=int, default=3, help="qyolo runs per case (median)")
    parser.add_argument("--pycocotools-repeat", type=int, default=1)
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(args.data, "cocoeval", "cocoapi-fake100")
        cases = [("fake100", os.path.join(fake, "instances_val2014_100.json"),
                  os.path.join(fake, "instances_val2014_fakebbox100_results.json"), None)]
        gt5k, dt5k = os.path.join(tmp, "coco5k_gt.json"), os.path.join(tmp, "coco5k_dt.json")
        n_images, n_gt, n_dt = generate_coco5k(gt5k, dt5k)
        cases.append(("coco5k", gt5k, dt5k, f"{n_images} / {n_gt} / {n_dt}"))
        metrics = os.path.join(tmp, "metrics.json")
        for name, gt_path, dt_path, size in cases:
            if size is None:
                with open(gt_path) as f:
                    g = json.load(f)
                with open(dt_path) as f:
                    d = json.load(f)
                size = f"{len(g['images'])} / {len(g['annotations'])} / {len(d)}"
            py_times = []
            for _ in range(args.pycocotools_repeat):
                seconds, py_stats = run_pycocotools(gt_path, dt_path)
                py_times.append(seconds)
            q_times, q1_times = [], []
            for _ in range(args.repeat):
                seconds, q_stats = run_qyolo(args.qyolo, gt_path, dt_path, metrics, threads)
                q_times.append(seconds)
                seconds, q1_stats = run_qyolo(args.qyolo, gt_path, dt_path, metrics, 1)
                q1_times.append(seconds)
            identical = q_stats == py_stats and q1_stats == py_stats
            if not identical:
                print(f"{name}: stats differ\n  pycocotools {py_stats}\n  qyolo       {q_stats}",
                      file=sys.stderr)
            py, q, q1 = statistics.median(py_times), statistics.median(q_times), \
                statistics.median(q1_times)
            rows.append((name, size, py, q1, q, identical))
            print(f"{name}: pycocotools {py:.3f} s, qyolo {q1:.3f} s (1 thread), "
                  f"{q:.3f} s ({threads} threads), stats identical: {identical}", file=sys.stderr)

    print(f"| case | images / GT / detections | pycocotools 2.0.8 | qyolo, 1 thread | "
          f"qyolo, {threads} threads | speed-up | 12 stats identical |")
    print("|---|---|---|---|---|---|---|")
    for name, size, py, q1, q, identical in rows:
        print(f"| {name} | {size} | {py:.2f} s | {q1:.3f} s | {q:.3f} s | "
              f"{py / q1:.0f}× / {py / q:.0f}× | {'yes' if identical else 'NO'} |")
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
