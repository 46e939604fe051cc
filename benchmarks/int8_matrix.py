"""INT8 against fp32, per family and runtime: `yolo export int8=True` (Ultralytics' settings, then the plugin's
transformer-aware ones), run through Ultralytics' own predictor on coco128 val, compared box by box with the fp32
export of the same checkpoint, plus latency (ONNX Runtime / OpenVINO, batch 1, threads as stated) and, with
``--data``, the COCO-standard AP of every export (``yolo-mobilevit cocoeval``).

    python benchmarks/int8_matrix.py --weights runs/*/weights/last.pt [--data DATA.yaml [--single-cls]] \
        --out benchmarks/results/int8_matrix.md

Calibration: 300 images, coco128 train + val (256) and horizontal flips of the first 44 train images (calibration
sets activation ranges only; labels are unused). The plugin's INT8 rows of the integration table are taken off in-process
for the "Ultralytics" variants and put back for the transformer-aware ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from ultralytics import YOLO
from ultralytics.engine import exporter  # noqa: F401 (imported so the integration table's rows can be applied)
from ultralytics.utils.export import litert as ul_litert  # noqa: F401
from ultralytics.utils.export import onnx as ul_onnx  # noqa: F401
from ultralytics.utils.export import openvino as ul_openvino  # noqa: F401

from yolo_mobilevit import integration
from yolo_mobilevit.tools.compare import labels

CALIBRATION_SIZE = 300


def calibration_set(coco128: Path, work: Path) -> Path:
    """A 300-image folder dataset: coco128 train + val and flipped train images; returns its data YAML."""
    folder = work / "calib" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((coco128 / "images" / "train2017").glob("*.jpg")) + sorted(
        (coco128 / "images" / "val2017").glob("*.jpg")
    )
    for f in files:
        shutil.copy(f, folder / f.name)
    for f in files[: CALIBRATION_SIZE - len(files)]:
        cv2.imwrite(str(folder / f"flip_{f.name}"), cv2.flip(cv2.imread(str(f)), 1))
    yaml = work / "calib" / "calib.yaml"
    yaml.write_text(
        f"path: {folder.parent}\ntrain: images\nval: images\nnames: {{{', '.join(f'{i}: c{i}' for i in range(80))}}}\n"
    )
    return yaml


#: the integration table's INT8 rows: taken off for Ultralytics' own settings (the export-trace row stays on)
INT8_ROWS = [
    p
    for p in integration.PATCHES
    if p.factory.endswith((":make_onnx_int8_quantize", ":make_torch2openvino", ":make_torch2litert"))
]


def patch(transformer_aware: bool) -> None:
    """Put the plugin's INT8 rows on (``transformer_aware``) or take them off: in this interpreter only, since the
    exports run in-process."""
    for row in INT8_ROWS:
        integration.apply(row) if transformer_aware else integration.undo(row)
        assert integration.is_patched(row) == transformer_aware, row


def predictions(path: str, images: list[Path], imgsz: int) -> list[np.ndarray]:
    model = YOLO(path, task="detect")
    out = []
    for r in model.predict([str(i) for i in images], imgsz=imgsz, conf=1e-4, max_det=100, verbose=False, stream=True):
        out.append(np.concatenate([r.boxes.xyxy.numpy(), r.boxes.cls.numpy()[:, None]], 1))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def agreement(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """Mean IoU of fp32 boxes greedily matched to same-class INT8 boxes, and % of fp32 boxes recovered at IoU 0.5."""
    ious = []
    for r, g in zip(ref, got):
        if not len(r):
            continue
        if not len(g):
            ious += [0.0] * len(r)
            continue
        m = iou(r, g) * (r[:, None, 4] == g[None, :, 4])
        used = set()
        for i in np.argsort(-m.max(1)):
            j = next((j for j in np.argsort(-m[i]) if j not in used), None)
            ious.append(float(m[i, j]) if j is not None else 0.0)
            if j is not None and m[i, j] > 0:
                used.add(j)
    ious = np.array(ious) if ious else np.zeros(1)
    return float(ious.mean()), float((ious >= 0.5).mean() * 100)


def raw_outputs(path: str, images: list[Path], imgsz: int) -> np.ndarray:
    """The raw head output (batch, 4 + classes, anchors) for each image, letterboxed as Ultralytics' predictor does."""
    from ultralytics.data.augment import LetterBox
    from ultralytics.nn.autobackend import AutoBackend

    backend = AutoBackend(path, device=torch.device("cpu"))
    letterbox = LetterBox((imgsz, imgsz), auto=False)
    out = []
    for f in images:
        im = letterbox(image=cv2.imread(str(f)))[:, :, ::-1].transpose(2, 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(im))[None].float() / 255
        y = backend(x)
        out.append((y[0] if isinstance(y, (list, tuple)) else y).numpy())
    return np.concatenate(out)


def raw_error(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """Mean |box| error (px), max |class score| error and the largest fp32 score: the tensor-level check that does not
    depend on which near-tied low-score boxes a top-k selection keeps."""
    return (
        float(np.abs(ref[:, :4] - got[:, :4]).mean()),
        float(np.abs(ref[:, 4:] - got[:, 4:]).max()),
        float(ref[:, 4:].max()),
    )


def coco_ap(path: str, data: str, imgsz: int, single_cls: bool, work: Path) -> str:
    """COCO AP / AP50 (``yolo-mobilevit cocoeval``) of an export on ``data``'s val split, as text for the table."""
    from yolo_mobilevit.tools.cocoeval import run

    report = run(path, data, imgsz=imgsz, single_cls=single_cls, device="cpu", project=str(work), name="cocoeval")
    return f"{report['metrics']['AP']:.4f} / {report['metrics']['AP50']:.4f}"


def latency(path: str, imgsz: int, repeats: int) -> float:
    """Median ms of the runtime alone (Ultralytics' AutoBackend forward), random input, 3 warm-up runs."""
    from ultralytics.nn.autobackend import AutoBackend

    backend = AutoBackend(path, device=torch.device("cpu"))
    x = torch.rand(1, 3, imgsz, imgsz)
    for _ in range(3):
        backend(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        backend(x)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--coco128", default="../shared/datasets/coco128")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--formats", nargs="+", default=["onnx", "openvino"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--raw-images", type=int, default=16, help="val images for the raw-output comparison")
    ap.add_argument("--work", default="runs/int8_matrix")
    ap.add_argument("--out", default="benchmarks/results/int8_matrix.md")
    ap.add_argument("--data", default=None, help="data YAML the weights were trained for: adds COCO AP / AP50")
    ap.add_argument("--single-cls", action="store_true", help="the weights were trained with single_cls=True")
    ap.add_argument("--variants", nargs="+", default=["fp32", "int8 (Ultralytics)", "int8 (transformer-aware)"])
    args = ap.parse_args()
    work = Path(args.work).resolve()
    coco = Path(args.coco128).resolve()
    calib = calibration_set(coco, work)
    images = sorted((coco / "images" / "val2017").glob("*.jpg"))
    rows = []
    for w, family in zip(args.weights, labels(args.weights)):
        for fmt in args.formats:
            results, raws = {}, {}
            for variant, kwargs, aware in [
                ("fp32", {}, True),
                ("int8 (Ultralytics)", {"int8": True, "data": str(calib)}, False),
                ("int8 (transformer-aware)", {"int8": True, "data": str(calib)}, True),
            ]:
                if variant not in args.variants and variant != "fp32":
                    continue
                dst = work / family / fmt / variant.split()[0] / ("aware" if aware else "ul")
                dst.mkdir(parents=True, exist_ok=True)
                pt = dst / f"{family}.pt"
                shutil.copy(w, pt)
                patch(aware)
                t = time.perf_counter()
                try:
                    f = YOLO(str(pt)).export(format=fmt, imgsz=args.imgsz, device="cpu", **kwargs)
                except Exception as e:  # noqa: BLE001 (a failed export is a result)
                    rows.append((family, fmt, variant, f"fails: {str(e)[:100]}", "-", "-", "-", "-", "-"))
                    continue
                seconds = time.perf_counter() - t
                preds = predictions(str(f), images, args.imgsz)
                results[variant] = preds
                raws[variant] = raw_outputs(str(f), images[: args.raw_images], args.imgsz)
                miou, rec = agreement(results["fp32"], preds) if variant != "fp32" else (1.0, 100.0)
                box_err, score_err, score_max = raw_error(raws["fp32"], raws[variant])
                ms = latency(str(f), args.imgsz, args.repeats)
                ap50 = coco_ap(str(f), args.data, args.imgsz, args.single_cls, dst) if args.data else "-"
                n = sum(len(p) for p in preds)
                rows.append(
                    (
                        family,
                        fmt,
                        variant,
                        f"ok ({seconds:.0f} s)",
                        f"{n}",
                        f"{miou:.3f} / {rec:.1f}%",
                        f"{box_err:.2f} / {score_err:.1e} (max {score_max:.1e})",
                        f"{ms:.1f}",
                        ap50,
                    )
                )
                print(rows[-1], flush=True)
            patch(False)
    load = os.getloadavg()
    lines = [
        (
            f"INT8 vs fp32 at imgsz {args.imgsz} (`python benchmarks/int8_matrix.py --weights {' '.join(args.weights)}`); "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; load average at the end "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2 cores shared with other jobs)."
        ),
        "",
        (
            "Agreement: Ultralytics `predict` (conf 1e-4, max_det 100: the top 100 boxes per image, since models "
            "trained on these machines score low) on the 128 coco128 val images; each fp32 box matched "
            "greedily to the same-class INT8 box of highest IoU: mean IoU, and % of fp32 boxes recovered at IoU >= 0.5. "
            "Latency: AutoBackend forward only, batch 1, random input, median of "
            f"{args.repeats} after 3 warm-up runs, runtime's default threads. Raw error: the head's output tensor on the "
            f"first {args.raw_images} val images (letterboxed as the predictor does), INT8 against fp32 of the same "
            "runtime: mean |box| error in pixels / max |class score| error (and the largest fp32 class score)."
        ),
        "",
        (
            f"COCO AP / AP50: `yolo-mobilevit cocoeval` of each export on the val split of {args.data}"
            + (" (one class)" if args.single_cls else "")
            if args.data
            else "COCO AP: not measured (no --data)."
        ),
        "",
        (
            "| model | runtime | precision | export | boxes | mean IoU / recovered@0.5 | raw error: box px / score | ms "
            "| COCO AP / AP50 |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in rows),
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
