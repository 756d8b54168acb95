"""A numpy transcription of pytorch-quantization's histogram amax functions
(pytorch_quantization/calib/histogram.py: _compute_amax_entropy, _compute_amax_mse,
_compute_amax_percentile), the oracle for qyolo's calibrators. The PyPI package of that name is
a placeholder and torch is not needed for the arithmetic, so the three functions are repeated
here line for line; scipy.stats.entropy and fake_tensor_quant are spelled out in numpy.

usage: calib_oracle.py COUNTS.npy BIN_WIDTH [--start-bin 128] [--stride 1] [--percentile 99.99]
prints one JSON object: {"entropy": ..., "entropy_unsigned": ..., "mse": ..., "mse_unsigned": ...,
"percentile": ...}
"""
import argparse
import json
from collections import Counter

import numpy as np


def scipy_entropy(pk, qk):
    # scipy.stats.entropy(pk, qk): both normalized, sum of rel_entr (inf where q = 0 < p).
    with np.errstate(divide="ignore", invalid="ignore"):
        pk = pk / np.sum(pk)
        qk = qk / np.sum(qk)
        terms = np.where(pk > 0, np.where(qk > 0, pk * np.log(pk / qk), np.inf), 0.0)
        terms = np.where(np.isnan(pk) | np.isnan(qk), np.nan, terms)
    return np.sum(terms)


def compute_amax_entropy(calib_hist, calib_bin_edges, num_bits, unsigned, stride=1, start_bin=128):
    bins = calib_hist[:].copy()
    bins[0] = bins[1]
    total_data = np.sum(bins)
    divergences = []
    nbins = 1 << (num_bits - 1 + int(unsigned))
    starting = start_bin
    stop = len(bins)
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(starting, stop + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        total_counts_new = np.sum(new_density) + np.sum(bins[i:])
        reference_density = np.array(bins[:len(digitized_space)], dtype=np.float64)
        reference_density[-1] += np.sum(bins[i:])
        total_counts_old = np.sum(reference_density)
        if round(total_counts_new) != total_data or round(total_counts_old) != total_data:
            raise RuntimeError("count mismatch")
        divergences.append(scipy_entropy(reference_density, new_density))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return float(calib_bin_edges[last_argmin * stride + starting])


def fake_tensor_quant(inputs, amax, num_bits, unsigned):
    # pytorch_quantization.tensor_quant, narrow_range=True, in float32.
    max_bound = np.float32(2.0 ** (num_bits - 1 + int(unsigned)) - 1.0)
    min_bound = np.float32(0.0) if unsigned else -max_bound
    scale = np.float32(max_bound / amax)
    outputs = np.clip(np.round(inputs * scale), min_bound, max_bound).astype(np.float32)
    return (outputs / scale).astype(np.float32)


def compute_amax_mse(calib_hist, calib_bin_edges, num_bits, unsigned, stride=1, start_bin=128):
    counts = calib_hist.astype(np.float32)
    edges = calib_bin_edges.astype(np.float32)
    centers = ((edges[1:] + edges[:-1]) / np.float32(2)).astype(np.float32)
    mses = []
    arguments = []
    for i in range(start_bin, len(centers), stride):
        amax = centers[i]
        quant_centers = fake_tensor_quant(centers, amax, num_bits, unsigned)
        mse = np.mean(((quant_centers - centers) ** 2 * counts).astype(np.float64))
        mses.append(mse)
        arguments.append(i)
    argmin = np.argmin(mses)
    return float(centers[arguments[argmin]])


def compute_amax_percentile(calib_hist, calib_bin_edges, percentile):
    total = calib_hist.sum()
    cdf = np.cumsum(calib_hist / total)
    idx = np.searchsorted(cdf, percentile / 100)
    return float(calib_bin_edges[idx])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("counts")
    parser.add_argument("width", type=float)
    parser.add_argument("--start-bin", type=int, default=128)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--percentile", type=float, default=99.99)
    args = parser.parse_args()
    hist = np.load(args.counts).astype(np.int64)
    edges = np.arange(len(hist) + 1, dtype=np.float64) * args.width
    result = {
        "entropy": compute_amax_entropy(hist, edges, 8, False, args.stride, args.start_bin),
        "entropy_unsigned": compute_amax_entropy(hist, edges, 8, True, args.stride, args.start_bin),
        "mse": compute_amax_mse(hist, edges, 8, False, args.stride, args.start_bin),
        "mse_unsigned": compute_amax_mse(hist, edges, 8, True, args.stride, args.start_bin),
        "percentile": compute_amax_percentile(hist, edges, args.percentile),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
