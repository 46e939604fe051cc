"""Params and GFLOPs of the shipped configs beside stock YOLOv8n and YOLO11n.

Usage: python benchmarks/model_table.py [--imgsz 640] [--configs cfg/yolov8n-mobilevit.yaml ...] [--out FILE.md]

Two GFLOPs columns: Ultralytics' own figure (thop: convolutions and linear layers, what `yolo` prints) and ours
(torch's FLOP counter plus attention: what the hardware computes). GFLOPs = 2 x multiply-accumulates.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import get_flops

from yolo_mobilevit.flops import count_macs

REPO = Path(__file__).resolve().parents[1]
STOCK = ["yolov8n.yaml", "yolo11n.yaml"]


def lettered(config: Path, scale: str = "n") -> str:
    """cfg/yolov8-mobilevit.yaml -> cfg/yolov8n-mobilevit.yaml (Ultralytics' scale-letter convention)."""
    return str(config.with_name(re.sub(r"^(yolo(?:v)?\d+)-", rf"\g<1>{scale}-", config.name, count=1)))


def default_configs() -> list[str]:
    return STOCK + [lettered(p) for p in sorted((REPO / "cfg").glob("*.yaml")) if not re.search(r"-(seg|pose|obb|cls)\.yaml$", p.name)]


def row(config: str, imgsz: int) -> dict[str, str]:
    model = DetectionModel(config, verbose=False).eval()
    n_backbone = len(model.yaml["backbone"])
    params = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for m in model.model[:n_backbone] for p in m.parameters())
    macs = count_macs(model, torch.zeros(1, 3, imgsz, imgsz))
    return {
        "model": Path(config).name,
        "params (M)": f"{params / 1e6:.2f}",
        "backbone params (M)": f"{backbone / 1e6:.2f}",
        f"GFLOPs@{imgsz} (Ultralytics)": f"{get_flops(model, imgsz):.1f}",
        f"GFLOPs@{imgsz} (attention counted)": f"{2 * macs / 1e9:.1f}",
    }


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--configs", nargs="*", default=None, help="model YAMLs (default: yolov8n, yolo11n, cfg/*)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    table = markdown([row(c, args.imgsz) for c in args.configs or default_configs()])
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
