"""Script entry for ``yolo-mobilevit compare`` (same arguments; see ``yolo-mobilevit compare --help``).

Usage: python benchmarks/compare.py MODEL [MODEL ...] [--data D.yaml] [--epochs N] [--imgsz S] [--batches 1 32]
       [--no-train] [--no-onnx] [--project DIR] [--name NAME] [KEY=VALUE ...]
"""

from __future__ import annotations

import sys

from yolo_mobilevit.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
