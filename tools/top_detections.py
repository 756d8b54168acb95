"""Prints the strongest detections in a YOLOv5 output0.npy (1 x N x 85, boxes decoded):
score = objectness x class probability, greedy class-aware NMS at IoU 0.45.

usage: top_detections.py output0.npy [--conf 0.25] [--top 10]
"""
import argparse

import numpy as np

COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0]); y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2]); y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(boxes) - inter + 1e-9)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    pred = np.load(args.output)[0]
    scores = pred[:, 4:5] * pred[:, 5:]
    cls = scores.argmax(1)
    score = scores.max(1)
    keep = score > args.conf
    xywh, cls, score = pred[keep, :4], cls[keep], score[keep]
    boxes = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2,
                      xywh[:, 0] + xywh[:, 2] / 2, xywh[:, 1] + xywh[:, 3] / 2], 1)
    order = score.argsort()[::-1]
    kept = []
    while order.size and len(kept) < args.top:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        overlap = iou(boxes[i], boxes[rest])
        order = rest[(overlap < 0.45) | (cls[rest] != cls[i])]
    print(f"{len(kept)} detections (score > {args.conf}), letterboxed 640x640 pixels:")
    for i in kept:
        x1, y1, x2, y2 = boxes[i]
        print(f"  {COCO_NAMES[cls[i]]:<14} {score[i]:.3f}  [{x1:6.1f} {y1:6.1f} {x2:6.1f} {y2:6.1f}]")


if __name__ == "__main__":
    main()
