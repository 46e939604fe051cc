"""COCO-standard box metrics (pycocotools ``COCOeval``) for any YOLO-format detection dataset.

``yolo-mobilevit cocoeval model=M data=D [KEY=VALUE ...]`` (parsing in ``cli.py``; :func:`run` here):

1. **Ground truth** (:func:`ground_truth`): a COCO ``instances`` dict built from the split's YOLO labels, boxes in
   pixels of the exif-corrected image size. For the COCO dataset (its 80 names) the category ids are COCO's own 91-ids
   and the image ids the numeric file stems, so that the file ``annotations/instances_<split>.json`` under the
   dataset's ``path`` is used instead when it is there (``annotations=auto``); it carries COCO's crowd regions and
   segment areas, which YOLO labels lose.
2. **Predictions** (:func:`predictions`): ``YOLO(model).predict`` under the COCO protocol: confidence threshold
   0.001, at most 100 detections per image (``maxDets`` 100), boxes in original-image pixels.
3. **Evaluation** (:func:`evaluate`): ``COCOeval(..., "bbox")`` over exactly the split's images: AP (IoU 0.50:0.95),
   AP50, AP75, APs / APm / APl (areas below 32², 32²-96², above 96² pixels) and AR100.

Writes ``ground_truth.json``, ``predictions.json`` and ``metrics.json`` into ``runs/cocoeval/NAME``.

How it differs from Ultralytics' own mAP50-95 (``yolo val``, ``ultralytics.utils.metrics.ap_per_class``):

- detections per image: COCO scores at most 100, Ultralytics' val keeps 300;
- AP: COCO averages the precision envelope read as a step function at 101 recall points; Ultralytics interpolates
  the envelope linearly and integrates it (trapezoids over the same 101 points);
- with COCO's annotation file, crowd regions are ignored (matches to them neither count nor cost) and the size
  classes use segment areas;
- COCO also reports AP for small, medium and large objects and the recall at 100 detections.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputRefused

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
# COCOeval.stats positions of METRICS (stats: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl)
_STATS_INDEX = (0, 1, 2, 3, 4, 5, 8)
KEYS = {
    "model": None,
    "data": None,
    "split": "val",
    "imgsz": 640,
    "batch": 16,
    "conf": 0.001,
    "iou": 0.7,
    "max_det": 100,
    "device": None,
    "half": False,
    "nms": None,  # YOLO26 on Ultralytics 8.4.190: False = the one-to-one (NMS-free) head; unset = one-to-many + NMS
    "single_cls": False,
    "annotations": "auto",
    "project": None,
    "name": "val",
    "exist_ok": False,
}


class CocoEvalError(InputRefused):
    """An evaluation that cannot run: bad argument, dataset or model. The message names it."""


# --------------------------------------------------------------------------------------------- ground truth


def image_files(source: str | Path | list) -> list[Path]:
    """The images of a split as Ultralytics reads them: a folder (searched recursively), a ``.txt`` list of paths
    (relative ones from the list's folder), or a list of either; sorted."""
    from ultralytics.data.utils import IMG_FORMATS

    files: list[Path] = []
    for item in source if isinstance(source, (list, tuple)) else [source]:
        path = Path(item)
        if path.is_dir():
            files += [p for p in path.rglob("*.*") if p.suffix[1:].lower() in IMG_FORMATS]
        elif path.is_file():
            lines = [x.strip() for x in path.read_text().splitlines() if x.strip()]
            files += [(path.parent / x).resolve() if not Path(x).is_absolute() else Path(x) for x in lines]
        else:
            raise CocoEvalError(f"images {path}: no such folder or list file")
    return sorted(files)


def image_ids(files: list[Path]) -> list[int]:
    """COCO image ids: the file stems when all are distinct numbers (COCO's own ids), else 1, 2, 3, ..."""
    stems = [f.stem for f in files]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(files) + 1))


def is_coco(names: dict[int, str]) -> bool:
    """Whether a dataset's class names are COCO's 80 (then COCO's 91-category ids apply)."""
    from ultralytics.utils import ROOT, YAML

    return list(names.values()) == list(YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"].values())


def category_ids(names: dict[int, str], single_cls: bool = False) -> list[int]:
    """COCO category id of each class index: COCO's 91-ids for the COCO names, else the index itself (as
    Ultralytics' ``save_json`` writes them); one category 0 with ``single_cls``."""
    from ultralytics.data.converter import coco80_to_coco91_class

    if single_cls:
        return [0] * len(names)
    return coco80_to_coco91_class() if is_coco(names) else list(range(len(names)))


def read_boxes(label_file: Path, pose: bool) -> list[tuple[int, float, float, float, float]]:
    """(class, x centre, y centre, width, height) normalised, per label line; polygons (segment / OBB labels) become
    their bounding boxes, pose lines keep their first five values."""
    if not label_file.is_file():
        return []
    boxes = []
    for line in label_file.read_text().splitlines():
        values = line.split()
        if not values:
            continue
        cls, coords = int(float(values[0])), [float(v) for v in values[1:]]
        if len(coords) > 4 and not pose:
            xs, ys = coords[0::2], coords[1::2]
            coords = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
        boxes.append((cls, *coords[:4]))
    return boxes


def ground_truth(data: dict[str, Any], split: str = "val", single_cls: bool = False) -> tuple[dict, list[Path]]:
    """(COCO instances dict, image files in id order) of ``split`` of a checked dataset dict
    (``ultralytics.data.utils.check_det_dataset``)."""
    from PIL import Image
    from ultralytics.data.utils import exif_size, img2label_paths

    if not data.get(split):
        raise CocoEvalError(f"dataset {data.get('yaml_file', '')}: no {split!r} split")
    files = image_files(data[split])
    if not files:
        raise CocoEvalError(f"dataset {data.get('yaml_file', '')}: no images in its {split!r} split ({data[split]})")
    names = data["names"]
    cats = category_ids(names, single_cls)
    images, annotations = [], []
    for file, image_id, label in zip(files, image_ids(files), img2label_paths([str(f) for f in files])):
        with Image.open(file) as im:
            width, height = exif_size(im)
        images.append({"id": image_id, "file_name": file.name, "width": width, "height": height})
        for cls, xc, yc, w, h in read_boxes(Path(label), pose="kpt_shape" in data):
            box = [round((xc - w / 2) * width, 3), round((yc - h / 2) * height, 3)]
            box += [round(w * width, 3), round(h * height, 3)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cats[cls],
                    "bbox": box,
                    "area": round(box[2] * box[3], 3),
                    "iscrowd": 0,
                }
            )
    categories = (
        [{"id": 0, "name": "object"}] if single_cls else [{"id": c, "name": names[i]} for i, c in enumerate(cats)]
    )
    return {"images": images, "annotations": annotations, "categories": categories}, files


def official_annotations(data: dict[str, Any], split: str, setting: str | Path) -> Path | None:
    """The COCO annotation file to use instead of the labels: ``auto`` -> ``<path>/annotations/instances_<split
    folder>.json`` for the COCO dataset when it exists; ``none`` -> None; else that file (which must exist)."""
    if str(setting).lower() == "none":
        return None
    if str(setting).lower() == "auto":
        folder = Path(str(data[split][0] if isinstance(data[split], list) else data[split]))
        candidate = Path(data.get("path", "")) / "annotations" / f"instances_{folder.stem}.json"
        return candidate if is_coco(data["names"]) and candidate.is_file() else None
    path = Path(setting)
    if not path.is_file():
        raise CocoEvalError(f"annotations={setting}: no such file")
    return path


# --------------------------------------------------------------------------------------------- predictions


def predictions(
    yolo: Any,
    files: list[Path],
    ids: list[int],
    cats: list[int],
    save_dir: Path | None = None,
    **predict_args: Any,
) -> list[dict[str, Any]]:
    """COCO result dicts (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in pixels, ``score``) of
    ``yolo.predict`` on ``files``; at most ``max_det`` per image, highest scores first.

    The predictor's own folder goes under ``save_dir`` and is removed again when empty: Ultralytics 8.4.0 creates
    ``runs/<task>/predictN`` (in its runs dir or the working directory) even when it saves nothing."""
    from ultralytics.utils import TQDM

    max_det = predict_args.get("max_det", 100)
    out: list[dict[str, Any]] = []
    where = {"project": str(save_dir), "name": "predict", "exist_ok": True} if save_dir is not None else {}
    results = yolo.predict(source=[str(f) for f in files], stream=True, verbose=False, **where, **predict_args)
    for image_id, result in TQDM(zip(ids, results), total=len(files), desc="cocoeval predict"):
        boxes = result.boxes
        if boxes is None or not len(boxes):
            continue
        order = boxes.conf.argsort(descending=True)[:max_det]
        for (x1, y1, x2, y2), score, cls in zip(
            boxes.xyxy[order].tolist(), boxes.conf[order].tolist(), boxes.cls[order].tolist()
        ):
            out.append(
                {
                    "image_id": image_id,
                    "category_id": cats[int(cls)],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(score, 5),
                }
            )
    if save_dir is not None:
        with contextlib.suppress(OSError):  # only when empty: rmdir refuses a folder holding anything
            (save_dir / "predict").rmdir()
    return out


# --------------------------------------------------------------------------------------------- evaluation


def evaluate(gt: dict | str | Path, dets: list[dict[str, Any]], img_ids: list[int] | None = None) -> dict:
    """COCO box metrics of ``dets`` against ``gt`` (a COCO dict or annotation file), over ``img_ids`` (default:
    every image of ``gt``). Metrics without ground truth in their area range are None; no detections: 0.0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
        if isinstance(gt, dict):
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
        else:
            coco = COCO(str(gt))
    ids = sorted(img_ids if img_ids is not None else coco.getImgIds())
    wanted = set(ids)
    dets = [d for d in dets if d["image_id"] in wanted]
    if not dets:
        return {"metrics": dict.fromkeys(METRICS, 0.0), "stats": [0.0] * 12, "summary": "no detections"}
    with contextlib.redirect_stdout(io.StringIO()) as text:
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    metrics = {k: (stats[i] if stats[i] >= 0 else None) for k, i in zip(METRICS, _STATS_INDEX)}
    return {"metrics": metrics, "stats": stats, "summary": text.getvalue().strip()}


def parse_args(items: list[str]) -> dict[str, Any]:
    """``["model=best.pt", "imgsz=320"]`` -> settings over :data:`KEYS`, typed as the ``yolo`` CLI types them;
    CocoEvalError on an unknown key or a missing model/data."""
    from ultralytics.cfg import smart_value

    out = dict(KEYS)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CocoEvalError(f"argument {item!r}: expected KEY=VALUE")
        if key.strip() not in KEYS:
            raise CocoEvalError(f"argument {item!r}: unknown key {key.strip()!r}; expected one of {', '.join(KEYS)}")
        out[key.strip()] = smart_value(value.strip())
    for key in ("model", "data"):
        if out[key] in (None, ""):
            raise CocoEvalError(f"{key}= is required, e.g. model=runs/detect/train/weights/best.pt data=coco8.yaml")
    return out


def run(model: Any, data: str, **settings: Any) -> dict[str, Any]:
    """Evaluate ``model`` (a path, or a ``YOLO``) on ``data`` under the COCO protocol (see the module docstring);
    writes the three JSON files and returns ``metrics.json``'s content (with ``save_dir``)."""
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER, RUNS_DIR
    from ultralytics.utils.files import increment_path

    opts = {**KEYS, **settings}
    unknown = set(settings) - set(KEYS)
    if unknown:
        raise CocoEvalError(f"unknown settings {sorted(unknown)}; expected some of {', '.join(KEYS)}")
    try:
        dataset = check_det_dataset(data, autodownload=os.environ.get("YOLO_OFFLINE", "").lower() not in {"1", "true"})
    except Exception as e:  # noqa: BLE001 (missing file, bad YAML, failed download: all name the dataset)
        raise CocoEvalError(f"data={data}: {type(e).__name__}: {e}") from None
    try:
        yolo = model if isinstance(model, YOLO) else YOLO(model)
    except Exception as e:  # noqa: BLE001
        raise CocoEvalError(f"model={model}: {type(e).__name__}: {e}") from None
    if yolo.task not in {"detect", "segment", "pose", "obb"}:
        raise CocoEvalError(f"model={model}: task {yolo.task!r} has no boxes to evaluate (detection models only)")
    names, single_cls = dataset["names"], bool(opts["single_cls"])
    if not single_cls and len(yolo.names) != len(names):
        raise CocoEvalError(
            f"model={model} has {len(yolo.names)} classes, data={data} {len(names)}: evaluate a model trained on "
            "this dataset, or pass single_cls=True"
        )

    split = opts["split"]
    gt, files = ground_truth(dataset, split, single_cls)
    ids, cats = image_ids(files), category_ids(names, single_cls)
    official = None if single_cls else official_annotations(dataset, split, opts["annotations"])
    keys = ("imgsz", "batch", "conf", "iou", "max_det", "device", "nms")
    predict_args = {k: opts[k] for k in keys if opts[k] is not None}
    predict_args |= {"half": True} if opts["half"] else {}  # only when asked: 8.4.190 deprecates the key
    project = Path(opts["project"]) if opts["project"] else RUNS_DIR / "cocoeval"
    save_dir = increment_path(project / str(opts["name"]), exist_ok=bool(opts["exist_ok"])).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    dets = predictions(yolo, files, ids, cats, save_dir=save_dir, **predict_args)
    result = evaluate(official or gt, dets, ids)

    (save_dir / "ground_truth.json").write_text(json.dumps(gt))
    (save_dir / "predictions.json").write_text(json.dumps(dets))
    report = {
        "model": str(getattr(yolo, "ckpt_path", None) or model),
        "data": str(data),
        "split": split,
        "images": len(files),
        "ground_truth": str(official) if official else "YOLO labels",
        "detections": len(dets),
        "settings": {k: v for k, v in opts.items() if k not in {"model", "data"}},
        **result,
        "save_dir": str(save_dir),
    }
    (save_dir / "metrics.json").write_text(json.dumps(report, indent=1))
    LOGGER.info(result["summary"])
    LOGGER.info(
        "cocoeval: "
        + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in result["metrics"].items())
        + f"\nResults saved to {save_dir}"
    )
    return report
