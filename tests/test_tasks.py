"""Every Ultralytics task (segment, pose, obb, classify) on every backbone family, through the plain `yolo` CLI.

One representative backbone per task trains 1 epoch on the matching offline dataset (training ends by validating
best.pt, whose metrics line is checked), then predicts from best.pt in a fresh process; every other (family, task)
config builds, infers its task and runs one forward.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CFG, DATASETS, dataset_yaml, yolo
from ultralytics.nn.tasks import (
    ClassificationModel,
    OBBModel,
    PoseModel,
    SegmentationModel,
    guess_model_task,
    yaml_model_load,
)

from yolo_mobilevit.modules import Classifier

FAMILIES = ("mobilevit", "mobilevitv2", "mobilenetv1", "mobilenetv2", "mobilenetv3-large", "mobileformer-151m")
TASKS = {"seg": "segment", "pose": "pose", "obb": "obb", "cls": "classify"}
MODELS = {"seg": SegmentationModel, "pose": PoseModel, "obb": OBBModel, "cls": ClassificationModel}
DATA = {"seg": "coco8-seg", "pose": "coco8-pose", "obb": "dota8"}


def config(family: str, task: str, scale: str = "n") -> Path:
    return CFG / f"yolov8{scale}-{family}-{task}.yaml"


def common(project: Path, imgsz: int) -> list[str]:
    return [f"imgsz={imgsz}", "batch=4", "device=cpu", f"project={project}", "exist_ok=True"]


def train_args(model: Path, data: str | Path, project: Path, imgsz: int = 64) -> list[str]:
    return [
        f"model={model}",
        f"data={data}",
        "epochs=1",
        "workers=0",
        "plots=False",
        "name=train",
        *common(project, imgsz),
    ]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_config_infers_task_builds_and_forwards(family: str, task: str):
    path = config(family, task)
    assert (CFG / f"yolov8-{family}-{task}.yaml").is_file()
    assert guess_model_task(yaml_model_load(path)) == TASKS[task]
    model = MODELS[task](str(path), verbose=False).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 64, 96))
    if task == "cls":
        probs, logits = y
        assert logits.shape == (2, 1000) and torch.allclose(probs.sum(1), torch.ones(2))
    else:
        assert model.stride.tolist() == [8.0, 16.0, 32.0]
        out = y
        while isinstance(out, (list, tuple)):  # Segment returns (boxes, protos)-style nests in eval
            out = out[0]
        extra = {"seg": 32, "pose": 17 * 3, "obb": 1}[task]
        assert out.shape == (2, 4 + model.yaml["nc"] + extra, 8 * 12 + 4 * 6 + 2 * 3)


@pytest.mark.parametrize("family", ["mobilevit", "mobilenetv3-large"])
def test_cls_scale_s_doubles_widths(family: str):
    model = ClassificationModel(str(config(family, "cls", "s")), nc=10, verbose=False)
    head = model.model[-1]
    assert isinstance(head, Classifier) and head.fc.out_features == 10
    n_head = ClassificationModel(str(config(family, "cls")), nc=10, verbose=False).model[-1]
    assert head.fc.in_features == 2 * n_head.fc.in_features


def test_classifier_outputs_follow_ultralytics_classify():
    head = Classifier(96, 384, nc=5, dropout=0.1)
    x = torch.rand(2, 96, 3, 5)
    assert head.train()(x).shape == (2, 5)
    probs, logits = head.eval()(x)
    assert torch.allclose(probs, logits.softmax(1))
    head.export = True
    assert torch.allclose(head(x), probs)
    with pytest.raises(ValueError, match="without a final conv"):
        Classifier(96, 128, nc=5, conv=False)


def train(word: list[str], model: Path, data: str | Path, tmp: Path) -> tuple[str, Path]:
    """``yolo [task] train`` for 1 epoch; returns the log of its final validation of best.pt, and best.pt."""
    out = yolo(*word, "train", *train_args(model, data, tmp), cwd=tmp)
    best = tmp / "train" / "weights" / "best.pt"
    log = out.stdout + out.stderr
    assert best.is_file() and f"Validating {best}" in log
    return log.split(f"Validating {best}")[-1], best


def predict(best: Path, source: Path, tmp: Path) -> None:
    """``yolo predict`` from best.pt in a fresh process: one saved result per source image."""
    yolo("predict", f"model={best}", f"source={source}", "save=True", "name=predict", *common(tmp, 64), cwd=tmp)
    images = sorted(p.stem for p in source.iterdir() if p.is_file())
    assert images and sorted(p.stem for p in (tmp / "predict").iterdir() if p.is_file()) == images


# (task, family, pass the task word to `yolo train`)
END_TO_END = [("seg", "mobilevit", True), ("pose", "mobilenetv3-large", False), ("obb", "mobilevitv2", False)]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "family", "task_word"), END_TO_END)
def test_dense_task_trains_validates_and_predicts(task: str, family: str, task_word: bool, tmp_path: Path):
    data = dataset_yaml(DATA[task])
    log, best = train([TASKS[task]] if task_word else [], config(family, task), data, tmp_path)
    assert {"seg": "Mask(P", "pose": "Pose(P", "obb": "mAP50-95"}[task] in log
    predict(best, data.parent / "images" / "val", tmp_path)


@pytest.mark.slow
def test_classify_trains_validates_and_predicts(tmp_path: Path):
    """MobileViT-XS with the paper head on imagenet10 (a folder dataset: train/ and val/ with one folder per class)."""
    data = DATASETS / "imagenet10"
    if not (data / "train").is_dir():
        pytest.fail(f"dataset {data} not found; set YOLO_MOBILEVIT_DATASETS to the folder holding imagenet10/")
    log, best = train(["classify"], config("mobilevit", "cls"), data, tmp_path)
    assert "top1_acc" in log and "top5_acc" in log
    predict(best, next(p for p in (data / "val").iterdir() if p.is_dir()), tmp_path)
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    head = ckpt["model"].model[-1]
    assert isinstance(head, Classifier) and head.fc.out_features == 10
