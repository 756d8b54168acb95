"""qyolo's FP32 CPU executor and onnxruntime (CPU) side by side on one model, same machine,
same run, same thread count: median ms per image and the ratio qyolo / onnxruntime.

usage: compare_onnxruntime.py --bench build/bench_cpu_fp32 --model yolov5n.onnx
                              [--iterations 30] [--threads 2] [--rounds 3]
Rounds alternate the two engines so that a noisy neighbour hurts both alike.
"""
import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import onnxruntime as ort


def time_onnxruntime(model, iterations, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    x = np.random.default_rng(0).random(meta.shape, dtype=np.float32)
    for _ in range(3):
        session.run(None, {meta.name: x})
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, {meta.name: x})
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def time_qyolo(bench, model, iterations, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([bench, model, str(iterations)], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(time_qyolo(args.bench, args.model, args.iterations, args.threads))
        theirs.append(time_onnxruntime(args.model, args.iterations, args.threads))
    q, o = min(ours), min(theirs)
    print(f"model        {os.path.basename(args.model)}")
    print(f"machine      {platform.processor() or platform.machine()}, {args.threads} threads")
    print(f"onnxruntime  {ort.__version__}")
    print(f"qyolo        {q:8.2f} ms/image  (best median of {args.rounds} rounds: {', '.join(f'{t:.1f}' for t in ours)})")
    print(f"onnxruntime  {o:8.2f} ms/image  (best median of {args.rounds} rounds: {', '.join(f'{t:.1f}' for t in theirs)})")
    print(f"ratio        {q / o:8.2f}  (qyolo time / onnxruntime time; below 1 is faster)")


if __name__ == "__main__":
    main()
