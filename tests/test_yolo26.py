"""YOLO26 configs: the twin's backbone rows under the stock YOLO26 neck and end-to-end (NMS-free) heads.

Each ``cfg/yolo26-*.yaml`` keeps the backbone rows of its ``cfg/yolov8-*.yaml`` twin exactly (so conversion and
``pretrained=`` fit both) and replaces the neck and head with ``cfg/models/26/yolo26*.yaml``'s at yolo26n widths.
"""

from __future__ import annotations

import functools
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from conftest import CFG, YOLO26_CONFIGS, dataset_yaml, python, train_args, yolo
from ultralytics import YOLO
from ultralytics.cfg import get_cfg

from yolo_mobilevit.layer_info import backbone_length

TASK_OF = {"seg": "segment", "pose": "pose", "obb": "obb", "cls": "classify"}
# per-detection columns of the end-to-end output: box (4) + score + class, then the task's extras
EXTRA_COLUMNS = {"detect": 0, "segment": 32, "pose": 17 * 3, "obb": 1}
STOCK = {
    "detect": "yolo26n.yaml",
    "segment": "yolo26n-seg.yaml",
    "pose": "yolo26n-pose.yaml",
    "obb": "yolo26n-obb.yaml",
}


def lettered(name: str, scale: str = "n") -> str:
    """``yolo26-mobilevit.yaml`` -> ``.../cfg/yolo26n-mobilevit.yaml``."""
    stem, rest = name.split("-", 1)
    return str(CFG / f"{stem}{scale}-{rest}")


def task_of(name: str) -> str:
    return TASK_OF.get(Path(name).stem.rsplit("-", 1)[-1], "detect")


def select_end2end(model: torch.nn.Module) -> None:
    """Pick the one-to-one branch for inference as Ultralytics' predictor and exporter do with ``nms=False``
    (8.4.190 has a setter; 8.4.0 uses the branch whenever the head has it)."""
    head = model.model[-1]
    if getattr(type(head).end2end, "fset", None) is not None:
        head.end2end = True
    assert head.end2end


def backbone_signature(model: torch.nn.Module, stop: int) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of every tensor in layers ``0 .. stop - 1``."""
    return [
        (k, tuple(v.shape))
        for k, v in model.state_dict().items()
        if int(k.split(".")[1]) < stop  # model.<i>.<...>
    ]


def test_every_family_and_task_ships():
    families = {"mobilevit", "mobilevit-xxs", "mobilevitv2", "mobilevitv2-050", "mobilenetv1", "mobilenetv2"}
    families |= {"mobilenetv3-large", "mobilenetv3-small", "mobileformer-151m"}
    assert {f"yolo26-{f}.yaml" for f in families} <= set(YOLO26_CONFIGS)
    for family in ("mobilevit", "mobilevitv2", "mobilenetv1", "mobilenetv2", "mobilenetv3-large", "mobileformer-151m"):
        assert {f"yolo26-{family}-{t}.yaml" for t in TASK_OF} <= set(YOLO26_CONFIGS)
    assert "yolo26-mobilenetv3-small-cls.yaml" in YOLO26_CONFIGS


@functools.cache
def stock_layout(task: str) -> tuple[list[tuple[str, int]], str]:
    """The stock yolo26n model of ``task``: its layout from the SPPF on, and its loss class."""
    stock = YOLO(STOCK[task], verbose=False).model
    return neck_layout(stock), loss_name(stock)


def loss_name(model: torch.nn.Module) -> str:
    """The class of the loss Ultralytics trains ``model`` with (E2ELoss, or a YOLO26 task loss, for end-to-end heads)."""
    model.args = get_cfg()  # the losses read their hyperparameters from the training arguments
    loss = model.init_criterion()
    return f"{type(loss).__name__}({type(getattr(loss, 'one2many', loss)).__name__})"


def neck_layout(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(module type, inner blocks) of every layer from the SPPF on (SPPF and C2PSA end both backbones)."""
    layers = model.model[backbone_length(model) - 2 :]
    return [(m.type, len(m.m) if isinstance(getattr(m, "m", None), torch.nn.ModuleList) else 0) for m in layers]


@pytest.mark.parametrize("name", YOLO26_CONFIGS)
def test_twin_backbone_stock_yolo26_neck_end_to_end_output(name: str):
    task = task_of(name)
    model = YOLO(lettered(name), verbose=False)
    assert model.task == task
    # read before the twin is built: Ultralytics keeps `legacy` on the head class, and a YOLOv8 build sets it back
    legacy = getattr(model.model.model[-1], "legacy", False)
    twin = YOLO(lettered(name.replace("yolo26-", "yolov8-")), verbose=False)
    # the twin's backbone rows (up to P5) are kept tensor for tensor; what follows is YOLO26's
    n_twin = backbone_length(twin.model) - (task != "classify")  # the twin's SPPF is replaced
    assert backbone_signature(model.model, n_twin) == backbone_signature(twin.model, n_twin)
    net = model.model.eval()
    x = torch.rand(1, 3, 128, 160)  # 420 anchors: the top 300 are kept
    if task == "classify":
        with torch.no_grad():
            y = net(x)
        assert (y[0] if isinstance(y, tuple) else y).shape == (1, 1000)  # 8.4.190 adds the logits
        assert [type(m).__name__ for m in net.model[-2:]] == ["C2PSA", "Classify"]
        return
    # from the SPPF on: the module types, repeats and head options of Ultralytics' own yolo26n config
    assert (neck_layout(net), loss_name(net)) == stock_layout(task)
    head = net.model[-1]
    assert (head.reg_max, legacy, net.yaml["end2end"]) == (1, False, True)
    assert net.stride.tolist() == [8.0, 16.0, 32.0]
    select_end2end(net)
    with torch.no_grad():
        y = net(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    y = y[0] if isinstance(y, (tuple, list)) else y  # segment: (detections, protos)
    assert y.shape == (1, 300, 6 + EXTRA_COLUMNS[task])


@pytest.mark.parametrize("scale", ["n", "s"])
def test_scale_s_doubles_widths(scale: str):
    model = YOLO(lettered("yolo26-mobilevitv2-050.yaml", scale), verbose=False).model
    assert model.yaml["scale"] == scale
    sppf = model.model[backbone_length(model) - 2]
    assert sppf.cv2.conv.out_channels == {"n": 256, "s": 512}[scale]  # yolo26n's / yolo26s' P5 width


@pytest.mark.slow
def test_trains_validates_predicts_and_exports_nms_free(tmp_path: Path):
    """The plain CLI on coco8 trains; then, in one fresh interpreter, val and predict with ``nms=False`` and an NMS-free
    ONNX of shape (1, 300, 6)."""
    data = dataset_yaml("coco8")
    yolo(*train_args(lettered("yolo26-mobilevitv2-050.yaml"), tmp_path), cwd=tmp_path)
    best = tmp_path / "train" / "weights" / "best.pt"
    source = data.parent / "images" / "val"
    python(
        f"""
        from ultralytics import YOLO
        common = dict(imgsz=64, batch=4, device="cpu", project={str(tmp_path)!r}, exist_ok=True, nms=False)
        model = YOLO({str(best)!r})
        model.val(data={str(data)!r}, name="val", **common)
        model.predict({str(source)!r}, name="pred", save=True, **common)
        model.export(format="onnx", imgsz=160, nms=False)
        """,
        cwd=tmp_path,
    )
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == len(list(source.glob("*.jpg")))
    session = ort.InferenceSession(str(best.with_suffix(".onnx")))
    assert [tuple(o.shape) for o in session.get_outputs()] == [(1, 300, 6)]
