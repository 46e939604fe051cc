"""COCO-standard evaluation: ground truth from YOLO labels as COCO JSON, pycocotools' scores, the command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CFG, dataset_yaml
from helpers import files_under, private_runs_dir, run_as_user
from ultralytics.data.utils import check_det_dataset
from ultralytics.utils import ROOT, YAML

from yolo_mobilevit import cli
from yolo_mobilevit.tools.cocoeval import (
    METRICS,
    CocoEvalError,
    category_ids,
    evaluate,
    ground_truth,
    official_annotations,
    parse_args,
    run,
)

COCO_NAMES = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]


def make_dataset(root: Path, names: dict[int, str], images: dict[str, tuple[int, int, list[str]]]) -> dict:
    """A YOLO dataset under ``root`` (images/val2017, labels/val2017): ``{stem: (width, height, label lines)}``;
    returns the checked dataset dict."""
    for folder in ("images", "labels"):
        (root / folder / "val2017").mkdir(parents=True, exist_ok=True)
    for stem, (width, height, lines) in images.items():
        cv2.imwrite(str(root / "images" / "val2017" / f"{stem}.jpg"), np.full((height, width, 3), 114, np.uint8))
        (root / "labels" / "val2017" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    yaml_file = root / "data.yaml"
    YAML.save(yaml_file, {"path": str(root), "train": "images/val2017", "val": "images/val2017", "names": names})
    return check_det_dataset(str(yaml_file), autodownload=False)


def test_ground_truth_is_the_hand_computed_coco_json(tmp_path: Path):
    """Pixel boxes from normalised centres, top-left corner, area, 1-based ids; polygons give their bounding box."""
    data = make_dataset(
        tmp_path,
        {0: "cat", 1: "dog"},
        {
            "a": (100, 50, ["0 0.5 0.5 0.2 0.4", "1 0.25 0.5 0.5 1.0"]),
            "b": (64, 64, ["1 0.1 0.1 0.5 0.1 0.5 0.3 0.1 0.3"]),  # a segment polygon
        },
    )
    gt, files = ground_truth(data)
    assert [f.name for f in files] == ["a.jpg", "b.jpg"]
    assert gt == {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 64},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [40.0, 15.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 50.0, 50.0], "area": 2500.0, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [6.4, 6.4, 25.6, 12.8], "area": 327.68, "iscrowd": 0},
        ],
        "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
    }
    single, _ = ground_truth(data, single_cls=True)
    assert {a["category_id"] for a in single["annotations"]} == {0}
    assert single["categories"] == [{"id": 0, "name": "object"}]


def test_coco_names_get_coco_category_and_image_ids(tmp_path: Path):
    """The COCO dataset: COCO's 91-ids (person 1, stop sign 13, toothbrush 90) and the numeric stems as image ids."""
    ids = category_ids(COCO_NAMES)
    assert (ids[0], ids[11], ids[79], len(set(ids))) == (1, 13, 90, 80)
    assert category_ids({0: "person", 1: "car"}) == [0, 1]
    data = make_dataset(tmp_path, COCO_NAMES, {"000000000042": (10, 10, ["79 0.5 0.5 1 1", "11 0.5 0.5 0.2 0.2"])})
    gt, _ = ground_truth(data)
    assert gt["images"][0]["id"] == 42
    assert [a["category_id"] for a in gt["annotations"]] == [90, 13]


def test_ground_truth_fed_back_scores_one_and_shifted_boxes_far_lower():
    """coco8's own labels as detections with score 1: every metric 1.000; the same boxes moved right by half their
    width (IoU 1/3 with their own box): AP and AP50 0."""
    data = check_det_dataset(str(dataset_yaml("coco8")), autodownload=False)
    gt, _ = ground_truth(data)
    assert len(gt["images"]) == 4 and len(gt["annotations"]) > 10
    exact = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0} for a in gt["annotations"]]
    result = evaluate(gt, exact)["metrics"]
    assert set(result) == set(METRICS)
    for key, value in result.items():
        assert value is None or value == pytest.approx(1.0), (key, value)
    assert result["AP"] == pytest.approx(1.0) and result["AR100"] == pytest.approx(1.0)

    shifted = [{**d, "bbox": [d["bbox"][0] + d["bbox"][2] / 2, *d["bbox"][1:]]} for d in exact]
    moved = evaluate(gt, shifted)["metrics"]
    assert moved["AP"] < 0.05 and moved["AP50"] == pytest.approx(0.0)
    assert evaluate(gt, [])["metrics"]["AP"] == 0.0  # nothing detected


def test_official_annotation_file_is_used_for_coco_and_ignores_crowds(tmp_path: Path):
    """COCO with ``annotations/instances_val2017.json``: chosen by ``annotations=auto``; a detection on its crowd
    region costs nothing there, while against the labels (which lose the crowd) it is a false positive."""
    data = make_dataset(tmp_path, COCO_NAMES, {"000000000007": (100, 100, ["0 0.25 0.25 0.2 0.2"])})
    official = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [15, 15, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 1},
        ],
        "categories": [{"id": c, "name": n} for c, n in zip(category_ids(COCO_NAMES), COCO_NAMES.values())],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(official))
    path = official_annotations(data, "val", "auto")
    assert path == tmp_path / "annotations" / "instances_val2017.json"
    assert official_annotations(data, "val", "none") is None
    with pytest.raises(CocoEvalError, match="annotations=missing.json: no such file"):
        official_annotations(data, "val", "missing.json")

    dets = [
        {"image_id": 7, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.95},  # on the crowd
        {"image_id": 7, "category_id": 1, "bbox": [15, 15, 20, 20], "score": 0.9},
    ]
    assert evaluate(path, dets)["metrics"]["AP"] == pytest.approx(1.0)
    assert evaluate(ground_truth(data)[0], dets)["metrics"]["AP"] < 0.6


@pytest.mark.slow
def test_run_end_to_end_writes_the_three_files(tmp_path: Path):
    """An (untrained) YOLO26 model on coco8: NMS-free predictions cut to 100 per image, COCO ids, metrics.json."""
    report = run(
        str(CFG / "yolo26n-mobilenetv3-small.yaml"),
        str(dataset_yaml("coco8")),
        imgsz=64,
        conf=0.0,
        nms=False,  # the one-to-one head: 300 candidates per image on 8.4.190
        device="cpu",
        project=str(tmp_path),
        name="e2e",
    )
    save_dir = tmp_path / "e2e"
    assert Path(report["save_dir"]) == save_dir
    assert json.loads((save_dir / "metrics.json").read_text())["metrics"] == report["metrics"]
    dets = json.loads((save_dir / "predictions.json").read_text())
    gt = json.loads((save_dir / "ground_truth.json").read_text())
    per_image = [sum(d["image_id"] == im["id"] for d in dets) for im in gt["images"]]
    assert len(per_image) == 4 and all(0 < n <= 100 for n in per_image), per_image
    assert {d["category_id"] for d in dets} <= set(category_ids(COCO_NAMES))
    assert report["detections"] == len(dets) and report["ground_truth"] == "YOLO labels"
    for key in METRICS:
        assert report["metrics"][key] is None or 0 <= report["metrics"][key] <= 1


def test_bad_arguments_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Unknown keys, missing model/data, a model with other classes: exit 2 with the argument named."""
    assert parse_args(["model=a.pt", "data=d.yaml", "imgsz=320"])["imgsz"] == 320
    assert cli.main(["cocoeval", "model=a.pt", "data=d.yaml", "foo=1"]) == 2
    assert "unknown key 'foo'" in capsys.readouterr().err
    assert cli.main(["cocoeval", "data=d.yaml"]) == 2
    assert "model= is required" in capsys.readouterr().err
    two_classes = make_dataset(tmp_path, {0: "cat", 1: "dog"}, {"a": (32, 32, ["0 0.5 0.5 0.5 0.5"])})
    with pytest.raises(CocoEvalError, match="has 80 classes, data=.* 2: .*single_cls=True"):
        run("yolov8n.yaml", two_classes["yaml_file"])


def test_writes_only_under_project(tmp_path: Path):
    """From an empty working directory with project= elsewhere: nothing lands in the working directory (8.4.0's
    predictor makes ``runs/detect/predict`` there) nor in Ultralytics' runs dir."""
    env, runs_dir = private_runs_dir(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "yolo_mobilevit.cli", "cocoeval", "model=yolov8n.yaml"]
    cmd += [f"data={dataset_yaml('coco8')}", "imgsz=64", "device=cpu", f"project={tmp_path / 'out'}", "name=e"]
    run_as_user(cmd, cwd, env)
    assert files_under(cwd) == [] and files_under(runs_dir) == []
    assert files_under(tmp_path / "out") == ["e", "e/ground_truth.json", "e/metrics.json", "e/predictions.json"]
