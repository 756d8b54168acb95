#!/usr/bin/env python3
"""numpy as the oracle for qyolo's .npy reader and writer (used by tests/test_npy.cpp).

  npy_oracle.py write <dir>
      Writes .npy files with numpy into <dir> and a manifest, <dir>/manifest.tsv, one
      tab-separated line per file:
        ok     <file>  <dtype>  <shape>  <values>    values in C order, space-separated
        error  <file>  <words the reader's error message must contain>
      <shape> is comma-separated dims, empty for a scalar.

  npy_oracle.py check <file.npy> <dtype> <shape> <sum> [<file.npy> <dtype> <shape> <sum> ...]
      Loads each file (qyolo wrote it) with np.load and checks dtype, shape and the sum of its
      elements (as float64). Also checks that np.save of the loaded array gives the same bytes,
      i.e. the header is laid out exactly as numpy lays it out. Exit status 0 when all match.
"""

import io
import math
import os
import sys

import numpy as np


def value_text(x):
    if isinstance(x, (bool, np.bool_)):
        return str(int(x))
    if isinstance(x, (np.floating, float)):
        return repr(float(x))
    return str(int(x))


def write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    lines = []

    def save_ok(name, array, version=None):
        path = os.path.join(out_dir, name)
        if version is None:
            np.save(path, array)
        else:
            with open(path, "wb") as f:
                np.lib.format.write_array(f, array, version=version)
        shape = ",".join(str(d) for d in array.shape)
        values = " ".join(value_text(x) for x in np.ascontiguousarray(array).ravel())
        lines.append("\t".join(["ok", name, array.dtype.name, shape, values]))

    def save_error(name, array, words, allow_pickle=False):
        np.save(os.path.join(out_dir, name), array, allow_pickle=allow_pickle)
        lines.append("\t".join(["error", name, words]))

    # One file per dtype qyolo reads, with values that exercise each type's range.
    save_ok("float32.npy", np.array([[1.5, -2.25, 0.0], [3.0e38, -1.0e-30, 7.0]], np.float32))
    save_ok("float64.npy", np.array([math.pi, -0.0, float("inf"), -1e300], np.float64))
    save_ok("float16.npy", np.array([[0.5, -2.25], [65504.0, 6.0e-5], [1.0e-7, -0.0]],
                                    np.float16))
    save_ok("int8.npy", np.array([-128, -1, 0, 1, 127], np.int8))
    save_ok("uint8.npy", np.array([[0, 1], [128, 255]], np.uint8))
    save_ok("int32.npy", np.array([[-2**31, -7, 0], [1, 123456, 2**31 - 1]], np.int32))
    save_ok("int64.npy", np.array([-2**52, 0, 2**52 + 1], np.int64))
    save_ok("bool.npy", np.array([True, False, False, True], np.bool_))

    # Shapes: scalar, zero-size, 1-D, 4-D, and a strided view (numpy writes it in C order).
    save_ok("scalar.npy", np.array(2.5, np.float32))
    save_ok("empty.npy", np.zeros((0, 3), np.float32))
    save_ok("vector.npy", np.arange(7, dtype=np.int32) * 3 - 10)
    save_ok("nchw.npy", (np.arange(120, dtype=np.float32) * 0.25 - 15).reshape(2, 3, 4, 5))
    save_ok("strided.npy", np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2])

    # Other format versions.
    save_ok("version2.npy", np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, version=(2, 0))
    save_ok("version3.npy", np.arange(5, dtype=np.int64) - 2, version=(3, 0))

    # What qyolo refuses, with the words its message must contain.
    save_error("fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
               "Fortran-order")
    save_error("big_endian.npy", np.arange(6, dtype=">f4").reshape(2, 3), "big-endian '>f4'")
    save_error("object.npy", np.array([{"a": 1}, None], dtype=object), "object",
               allow_pickle=True)
    save_error("structured.npy", np.zeros(3, dtype=[("x", "<f4"), ("y", "<i4")]), "structured")
    save_error("complex.npy", np.zeros(3, dtype=np.complex64), "unsupported dtype '<c8'")

    with open(os.path.join(out_dir, "manifest.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def check_one(path, dtype, shape_text, expected_sum):
    problems = []
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:  # report any load failure as a check failure
        return [f"{path}: np.load failed: {e}"]
    shape = tuple(int(d) for d in shape_text.split(",") if d.strip())
    if array.dtype.name != dtype:
        problems.append(f"{path}: dtype {array.dtype.name}, expected {dtype}")
    if array.shape != shape:
        problems.append(f"{path}: shape {array.shape}, expected {shape}")
    total = float(array.astype(np.float64).sum())
    expected = float(expected_sum)
    if not math.isclose(total, expected, rel_tol=1e-9, abs_tol=1e-9):
        problems.append(f"{path}: sum {total!r}, expected {expected!r}")
    with open(path, "rb") as f:
        written = f.read()
    reference = io.BytesIO()
    np.save(reference, array)
    if written != reference.getvalue():
        problems.append(f"{path}: bytes differ from np.save of the same array "
                        f"(header {written[:128]!r} vs {reference.getvalue()[:128]!r})")
    return problems


def check(args):
    if not args or len(args) % 4:
        print("check needs groups of: <file.npy> <dtype> <shape> <sum>", file=sys.stderr)
        return 2
    problems = []
    for i in range(0, len(args), 4):
        problems += check_one(*args[i:i + 4])
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: {len(args) // 4} file(s)")
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "write" and len(argv) == 2:
        return write(argv[1])
    if len(argv) >= 1 and argv[0] == "check":
        return check(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
