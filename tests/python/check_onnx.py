"""Exits non-zero unless onnx.checker (full_check, with strict shape inference) accepts a model.

Usage: check_onnx.py model.onnx
"""
import sys

import onnx


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: check_onnx.py model.onnx", file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        # Checking by path also handles models over protobuf's 2 GiB in-memory limit.
        onnx.checker.check_model(path, full_check=True)
    except Exception as error:  # the checker raises several exception types
        print(f"{path}: onnx.checker failed: {error}", file=sys.stderr)
        return 1
    print(f"{path}: onnx.checker ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
