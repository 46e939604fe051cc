"""Semantic segmentation (``-sem``) and depth (``-depth``) configs: each family flagship's detect-twin backbone under
the stock YOLO26 neck and the stock ``SemanticSegment`` / ``Depth`` head, the offline datasets of
``tests/task_datasets.py``, and the refusal on an Ultralytics older than the task.

Runs on every supported Ultralytics: where the installed release lacks a task, its config tests are skipped and the
refusal test asserts the message instead (CI runs the fast tests on 8.4.0 too).
"""

from __future__ import annotations

import functools
import types
from pathlib import Path

import numpy as np
import pytest
import task_datasets
import torch
import ultralytics
from conftest import CFG, DATASETS, python, yolo
from ultralytics import YOLO
from ultralytics.cfg import TASKS

from yolo_mobilevit.errors import YamlRowError
from yolo_mobilevit.layer_info import backbone_length, feature_info, feature_taps
from yolo_mobilevit.task_heads import FIRST_RELEASE, require_task_heads
from yolo_mobilevit.versions import parse_version

FAMILIES = (
    "mobilevit", "mobilevit-xxs", "mobilevitv2", "mobilevitv2-050", "mobilenetv1", "mobilenetv2",
    "mobilenetv3-large", "mobilenetv3-small", "mobileformer-151m",
)  # fmt: skip
TASK_OF = {"sem": "semantic", "depth": "depth"}
HEAD_OF = {"semantic": "SemanticSegment", "depth": "Depth"}
STOCK = {"semantic": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml"}
CONFIGS = [f"yolo26-{family}-{suffix}.yaml" for family in FAMILIES for suffix in TASK_OF]
SIZE = (128, 160)  # H, W: P5 is 4x5


def lettered(name: str, scale: str = "n") -> Path:
    """``yolo26-mobilevit-sem.yaml`` -> ``cfg/yolo26n-mobilevit-sem.yaml``."""
    stem, rest = name.split("-", 1)
    return CFG / f"{stem}{scale}-{rest}"


def task_of(name: str) -> str:
    return TASK_OF[Path(name).stem.rsplit("-", 1)[-1]]


def needs(task: str):
    """Skip where the installed Ultralytics predates ``task`` (``test_refused_before_the_first_release`` covers it)."""
    return pytest.mark.skipif(task not in TASKS, reason=f"ultralytics {ultralytics.__version__} has no task={task}")


def run_hooked(net: torch.nn.Module, x: torch.Tensor) -> tuple[object, dict[int, list[tuple]], dict[int, tuple]]:
    """Forward ``x``; returns (output, input shapes per layer, output shape per layer) (plain maps only)."""
    inputs, outputs, hooks = {}, {}, []

    def shapes(value) -> list[tuple]:
        values = value if isinstance(value, (list, tuple)) else [value]
        return [tuple(v.shape) for v in values if isinstance(v, torch.Tensor) and v.ndim == 4]

    for i, layer in enumerate(net.model):

        def hook(_m, args, out, i=i):
            inputs[i] = shapes(args[0])
            found = shapes(out)
            if found:
                outputs[i] = found[0]

        hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = net(x)
    finally:
        for h in hooks:
            h.remove()
    return y, inputs, outputs


def relative_from(f: int | list[int], i: int, start: int) -> tuple:
    """A layer's ``from`` relative to the SPPF row (backbone rows before it as 'backbone')."""
    entries = f if isinstance(f, list) else [f]
    absolute = [i + j if j < 0 else j for j in entries]
    return tuple(j - start if j >= start else "backbone" for j in absolute)


def layout(net: torch.nn.Module, x: torch.Tensor) -> list[dict]:
    """Per layer from the SPPF on: type, relative ``from``, inner blocks, input/output channels, parameter shapes."""
    start = backbone_length(net) - 2  # SPPF, C2PSA end every YOLO26 backbone
    _, inputs, outputs = run_hooked(net, x)
    rows = []
    for i in range(start, len(net.model)):
        m = net.model[i]
        rows.append(
            {
                "type": type(m).__name__,
                "from": relative_from(m.f, i, start),
                "blocks": len(m.m) if isinstance(getattr(m, "m", None), torch.nn.ModuleList) else 0,
                "in": [s[1] for s in inputs.get(i, [])],
                "out": outputs[i][1] if i in outputs else None,
                "shapes": [(k, tuple(v.shape)) for k, v in m.state_dict().items()],
            }
        )
    return rows


@functools.cache
def stock(task: str) -> tuple[YOLO, list[dict]]:
    model = YOLO(STOCK[task], verbose=False)
    return model, layout(model.model.eval(), torch.rand(1, 3, *SIZE))


def test_every_flagship_ships_both_tasks():
    shipped = {p.name for p in CFG.glob("yolo26-*-sem.yaml")} | {p.name for p in CFG.glob("yolo26-*-depth.yaml")}
    assert shipped == set(CONFIGS)
    assert all((CFG / f"yolo26-{family}.yaml").exists() for family in FAMILIES)  # each has its detect twin


@pytest.mark.parametrize("name", CONFIGS)
def test_twin_backbone_stock_neck_and_head(name: str):
    task = task_of(name)
    if task not in TASKS:
        pytest.skip(f"ultralytics {ultralytics.__version__} has no task={task}")
    model = YOLO(lettered(name), verbose=False)
    assert model.task == task
    net = model.model.eval()
    # the detect twin's backbone rows, SPPF and C2PSA included, tensor for tensor
    twin = YOLO(lettered(name.rsplit("-", 1)[0] + ".yaml"), verbose=False).model
    n = backbone_length(twin)
    assert backbone_length(net) == n and net.yaml["backbone"] == twin.yaml["backbone"]
    assert net.yaml.get("backbone_weights") == twin.yaml.get("backbone_weights")
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items() if int(k.split(".")[1]) < n]
    assert ours == [(k, tuple(v.shape)) for k, v in twin.state_dict().items() if int(k.split(".")[1]) < n]

    # from the SPPF on: stock yolo26n-sem / -depth module for module; parameter shapes equal wherever a layer
    # receives stock's channels (only the layers fed a backbone tap see the backbone's own widths)
    theirs = stock(task)[1]
    mine = layout(net, torch.rand(1, 3, *SIZE))
    key = ("type", "from", "blocks")
    assert [[r[k] for k in key] for r in mine] == [[r[k] for k in key] for r in theirs]
    same_input = [a["in"] == b["in"] for a, b in zip(mine, theirs)]
    for a, b, same in zip(mine, theirs, same_input):
        if same:
            assert a["shapes"] == b["shapes"], a["type"]
        if a["type"] != "Concat":
            assert a["out"] == b["out"], a["type"]
    assert same_input[-1] and same_input[1]  # the head and C2PSA: exactly stock's parameters
    assert mine[-1]["type"] == HEAD_OF[task]

    # feature_info describes the maps the neck reads: the P3/P4/P5 taps, at their channels and reductions
    taps = feature_taps(model)
    read = {j for i in range(n - 2, len(net.model)) for j in _backbone_sources(net, i, n)}
    assert read == set(taps.values())
    info = {row["index"]: row for row in feature_info(model)}
    _, _, outputs = run_hooked(net, torch.rand(1, 3, *SIZE))
    for level, index in taps.items():
        reduction = 2 ** int(level[1])
        assert info[index]["reduction"] == reduction
        assert outputs[index] == (1, info[index]["channels"], SIZE[0] // reduction, SIZE[1] // reduction)


def _backbone_sources(net: torch.nn.Module, i: int, n: int) -> list[int]:
    """The backbone rows (before the SPPF) that layer ``i`` reads."""
    f = net.model[i].f
    return [j if j >= 0 else i + j for j in (f if isinstance(f, list) else [f]) if (j if j >= 0 else i + j) < n - 2]


@pytest.mark.parametrize("suffix", list(TASK_OF))
def test_output_shapes_train_eval_and_export(suffix: str):
    """One family per task at 128x160: training output, eval output, and the graph export traces."""
    task = TASK_OF[suffix]
    if task not in TASKS:
        pytest.skip(f"ultralytics {ultralytics.__version__} has no task={task}")
    net = YOLO(lettered(f"yolo26-mobilevit-xxs-{suffix}.yaml"), verbose=False).model
    x = torch.rand(2, 3, *SIZE)
    h, w = SIZE
    head = net.model[-1]
    assert net.stride.tolist() == [32.0]
    with torch.no_grad():
        y = net.train()(x)
        if task == "semantic":
            nc = head.nc
            assert nc == 19  # the configs' default, as stock yolo26-sem
            assert [tuple(t.shape) for t in y] == [(2, nc, h // 8, w // 8), (2, nc, h // 16, w // 16)]  # main, aux
            assert tuple(net.eval()(x).shape) == (2, nc, h // 8, w // 8)
        else:
            assert tuple(y["depth"].shape) == (2, 1, h // 4, w // 4)
            out = net.eval()(x)
            assert tuple(out.shape) == (2, 1, h // 4, w // 4) and bool((out > 0).all())
        head.export, head.format = True, "onnx"
        try:
            out = net.eval()(x)
        finally:
            head.export, head.format = False, None
    if task == "semantic":  # the class map at input size
        assert tuple(out.shape) == (2, h, w) and out.dtype == torch.uint8
    else:
        assert tuple(out.shape) == (2, 1, h, w)


@pytest.mark.parametrize("suffix", list(TASK_OF))
def test_refused_before_the_first_release(suffix: str):
    """Below the task's first release the config fails with one message naming the task, the installed version
    and the first release; from it on the config builds."""
    task = TASK_OF[suffix]
    head = HEAD_OF[task]
    first = FIRST_RELEASE[head][1]
    path = lettered(f"yolo26-mobilenetv3-small-{suffix}.yaml")
    if parse_version(ultralytics.__version__) >= parse_version(first):
        assert task in TASKS
        assert YOLO(path, verbose=False).task == task
        return
    assert task not in TASKS
    with pytest.raises(YamlRowError) as caught:
        YOLO(path, verbose=False)
    message = str(caught.value)
    assert path.name in message and f"'{head}'" in message
    assert f"task={task}" in message and f"ultralytics {ultralytics.__version__} (installed)" in message
    assert f"first shipped in ultralytics {first}" in message


def test_refusal_names_task_version_and_first_release():
    """The check itself, on any Ultralytics: a ``tasks`` module without the head refuses, one with it accepts."""
    import yaml

    for suffix, task in TASK_OF.items():
        path = CFG / f"yolo26-mobilevit-{suffix}.yaml"
        d = {**yaml.safe_load(path.read_text()), "yaml_file": str(path)}
        first = FIRST_RELEASE[HEAD_OF[task]][1]
        with pytest.raises(YamlRowError, match=rf"task={task}, .* first shipped in ultralytics {first}\."):
            require_task_heads(d, types.SimpleNamespace())
        require_task_heads(d, types.SimpleNamespace(**{HEAD_OF[task]: object}))


# ------------------------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def task_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("task_datasets")
    source = DATASETS / "coco8-seg"
    return {
        "masks": task_datasets.semantic_masks(out, source),
        "polygons": task_datasets.semantic_polygons(out, source),
        "depth": task_datasets.synthetic_depth(out),
    }


def _dataset(task: str, data_yaml: Path, imgsz: int = 160):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"task": task, "imgsz": imgsz})
    return build_yolo_dataset(cfg, data["val"], 4, data, mode="val", stride=32), data


@needs("semantic")
def test_png_masks_agree_with_ultralytics_polygon_rasterizer(task_data: dict[str, Path]):
    """The masks written with cv2.fillPoly (masks_dir + label_mapping, outlines ignored) and Ultralytics' own polygon
    rasterizer (PolygonSemanticDataset) give the same classes, background included, on the non-ignored pixels."""
    from ultralytics.data.dataset import PolygonSemanticDataset, SemanticDataset

    masks, data_masks = _dataset("semantic", task_data["masks"])
    polygons, data_polygons = _dataset("semantic", task_data["polygons"])
    assert type(masks) is SemanticDataset and type(polygons) is PolygonSemanticDataset
    assert data_masks["names"] == data_polygons["names"] and data_masks["nc"] == data_polygons["nc"] == 81
    assert len(masks) == len(polygons) == 4
    for i in range(len(masks)):
        a, b = masks[i]["semantic_mask"].numpy(), polygons[i]["semantic_mask"].numpy()
        assert a.shape == b.shape
        valid = a != 255
        padding = b == 255  # the letterbox border, ignored in both forms
        assert not (valid & padding).any()
        assert 0.002 < (~valid & ~padding).mean() < 0.2  # the outlines are ignored, the rest is labelled
        assert (a[valid] == b[valid]).mean() > 0.97
        assert set(np.unique(a[valid])) == set(np.unique(b[valid]))  # background (80) and every object class


@needs("depth")
def test_synthetic_depth_reads_back_in_metres(task_data: dict[str, Path]):
    import cv2

    dataset, data = _dataset("depth", task_data["depth"])
    assert data["depth_scale"] == 1000 and len(dataset) == 4
    sample = dataset[0]
    depth = sample["depth"].numpy().squeeze()
    assert depth.shape == tuple(sample["img"].shape[-2:])
    assert 2.0 < depth.min() and depth.max() < 10.0  # boxes from 2.5 m, the back wall at 6-9 m
    raw = cv2.imread(str(Path(dataset.im_files[0].replace("/images/", "/depth/"))), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and abs(float(depth.max()) - raw.max() / 1000) < 0.01


# ------------------------------------------------------------------------------------------- the plain CLI
SEMANTIC_CFG = "yolo26n-mobilenetv3-small-sem.yaml"  # the smallest backbones: the CLI runs stay cheap
DEPTH_CFG = "yolo26n-mobilevit-xxs-depth.yaml"
CLI = ["imgsz=64", "batch=4", "workers=0", "device=cpu", "exist_ok=True"]
EXPORT_SIZE = 64


def _interrupted_training(config: str, data: Path, project: Path) -> str:
    """Epoch 1 of 2 in a fresh interpreter (pretrained backbone by default: offline, the weights store warns and
    the backbone starts from scratch), interrupted; returns the log. ``yolo train resume`` finishes it."""
    out = python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(CFG / config)!r})
        def interrupt(trainer):
            raise KeyboardInterrupt("simulated interruption after epoch 1")
        model.add_callback("on_fit_epoch_end", interrupt)
        try:
            model.train(data={str(data)!r}, epochs=2, imgsz=64, batch=4, workers=0, device="cpu",
                        project={str(project)!r}, name="run", exist_ok=True, plots=False)
        except KeyboardInterrupt:
            print("interrupted")
        """,
        cwd=project,
    )
    return out.stdout + out.stderr


def _resume(project: Path) -> str:
    out = yolo("train", "resume", f"model={project / 'run' / 'weights' / 'last.pt'}", cwd=project)
    log = out.stdout + out.stderr
    assert "Resuming training" in log and "from epoch 2 to 2 total epochs" in log
    return log


def _metric_row(log: str, label: str) -> list[float]:
    """The numbers of the last line of a validation table whose first column is ``label``."""
    rows = [line.split() for line in log.splitlines() if line.split()[:1] == [label]]
    assert rows, f"no '{label}' row in:\n{log[-3000:]}"
    return [float(v) for v in rows[-1][1:]]


def _image(data: Path, size: int = EXPORT_SIZE) -> torch.Tensor:
    from export_check import resized

    return resized(next(iter(sorted((data.parent / "images" / "val").glob("*.*")))), size)[None]


def _exported_outputs(best: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    import openvino as ov

    onnx = ort.InferenceSession(str(best.with_suffix(".onnx")))
    xml = next(best.with_name(f"{best.stem}_openvino_model").glob("*.xml"))
    return {
        "onnx": onnx.run(None, {onnx.get_inputs()[0].name: x.numpy()})[0],
        "openvino": ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0],
    }


def _torch_export_output(best: Path, x: torch.Tensor) -> torch.Tensor:
    """The head's export-mode output in PyTorch (unfused checkpoint): semantic logits at input size (the formats
    that bake the argmax are given the logits), depth at input size."""
    net = YOLO(best).model.float().eval()
    head = net.model[-1]
    head.export, head.format = True, "torchscript"
    with torch.no_grad():
        return net(x)


@pytest.mark.slow
@needs("semantic")
def test_semantic_cli_trains_resumes_validates_predicts_and_exports(task_data: dict[str, Path], tmp_path: Path):
    """PNG masks with label_mapping: train (interrupted) -> ``yolo train resume`` -> ``yolo val`` (mIoU) ->
    ``yolo predict`` -> ``yolo export`` ONNX and OpenVINO, each in a fresh interpreter; the exported class maps equal
    PyTorch's argmax wherever its top two logits are apart."""
    data = task_data["masks"]
    log = _interrupted_training(SEMANTIC_CFG, data, tmp_path)
    assert "interrupted" in log and "Training the backbone from scratch" in log  # offline: no ImageNet weights
    _resume(tmp_path)
    best = tmp_path / "run" / "weights" / "best.pt"
    out = yolo("val", "task=semantic", f"model={best}", f"data={data}", *CLI, f"project={tmp_path}", "name=val",
               cwd=tmp_path)  # fmt: skip
    images, pixels, miou, pixel_acc = _metric_row(out.stdout + out.stderr, "all")
    assert images == 4 and pixels > 0 and 0.0 <= miou <= 1.0 and 0.0 <= pixel_acc <= 1.0
    results = tmp_path / "run" / "results.csv"
    assert "metrics/mIoU" in results.read_text().splitlines()[0] and len(results.read_text().splitlines()) == 3
    source = data.parent / "images" / "val"
    yolo("predict", f"model={best}", f"source={source}", *CLI, f"project={tmp_path}", "name=pred", "save=True",
         cwd=tmp_path)  # fmt: skip
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == len(list(source.glob("*.jpg")))
    for fmt in ("onnx", "openvino"):
        yolo("export", f"model={best}", f"format={fmt}", f"imgsz={EXPORT_SIZE}", "device=cpu", cwd=tmp_path)

    x = _image(data)
    logits = _torch_export_output(best, x)  # (1, nc, H, W)
    assert tuple(logits.shape) == (1, 81, EXPORT_SIZE, EXPORT_SIZE)
    top2 = logits.topk(2, dim=1).values
    decided = ((top2[:, 0] - top2[:, 1]) > 1e-3 * float(logits.abs().max())).numpy()
    expected = logits.argmax(1).numpy()
    assert decided.mean() > 0.9
    for fmt, got in _exported_outputs(best, x).items():
        assert got.shape == (1, EXPORT_SIZE, EXPORT_SIZE) and got.dtype == np.uint8, fmt
        assert (got[decided] == expected[decided]).all(), fmt


@pytest.mark.slow
@needs("semantic")
def test_semantic_variable_batch_from_the_cli(task_data: dict[str, Path], tmp_path: Path):
    """``yolo train task=semantic variable_batch=True`` on the polygon form: batches at more than one size, the
    masks at imgsz (Ultralytics' semantic loss resizes the logits to them), mIoU recorded."""
    out = yolo("train", "task=semantic", f"model={CFG / SEMANTIC_CFG}", f"data={task_data['polygons']}",
               "epochs=1", "imgsz=64", "batch=2", "workers=0", "device=cpu", "variable_batch=True", "pretrained=False",
               f"project={tmp_path}", "name=vb", "exist_ok=True", "plots=False", cwd=tmp_path)  # fmt: skip
    log = out.stdout + out.stderr
    summary = [line for line in log.splitlines() if "variable_batch:" in line and "epoch 1:" in line]
    assert summary and "4 images in 3 batches (per size {64: 2, 96: 1})" in summary[0]
    assert "metrics/mIoU" in (tmp_path / "vb" / "results.csv").read_text()


@pytest.mark.slow
@needs("depth")
def test_depth_cli_trains_resumes_validates_predicts_and_exports(task_data: dict[str, Path], tmp_path: Path):
    """SYNTHETIC depth scenes: train (interrupted) -> ``yolo train resume`` (Ultralytics then writes its output
    calibration into best.pt) -> ``yolo val`` (delta1, AbsRel); then in one fresh interpreter predict and export
    ONNX and OpenVINO, whose depth maps equal PyTorch's."""
    data = task_data["depth"]
    log = _interrupted_training(DEPTH_CFG, data, tmp_path)
    assert "interrupted" in log and "Training the backbone from scratch" in log
    log = _resume(tmp_path)
    assert "Auto-calibration written to best.pt" in log
    best = tmp_path / "run" / "weights" / "best.pt"
    out = yolo("val", "task=depth", f"model={best}", f"data={data}", *CLI, f"project={tmp_path}", "name=val",
               cwd=tmp_path)  # fmt: skip
    images, delta1, abs_rel, rmse, _silog = _metric_row(out.stdout + out.stderr, "depth_val")
    assert images == 4 and 0.0 <= delta1 <= 1.0 and abs_rel > 0 and rmse > 0
    source = data.parent / "images" / "val"
    python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(best)!r})
        results = model.predict({str(source)!r}, imgsz=64, device="cpu")
        assert len(results) == 4 and all(float(r.depth.data.min()) > 0 for r in results)
        for fmt in ("onnx", "openvino"):
            model.export(format=fmt, imgsz={EXPORT_SIZE}, device="cpu")
        """,
        cwd=tmp_path,
    )
    x = _image(data)
    expected = _torch_export_output(best, x).numpy()
    assert expected.shape == (1, 1, EXPORT_SIZE, EXPORT_SIZE) and (expected > 0).all()
    for fmt, got in _exported_outputs(best, x).items():
        assert got.shape == expected.shape, fmt
        assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-3, fmt


def test_variable_batch_refuses_depth_and_accepts_semantic():
    """variable_batch takes the semantic trainer (masks stay at imgsz; the loss resizes the logits to them) and
    refuses depth before training, naming the task."""
    from ultralytics.cfg import get_cfg

    assert get_cfg(overrides={"variable_batch": True, "task": "semantic"}).variable_batch is True
    with pytest.raises(ValueError, match=r"'variable_batch' supports training tasks .*semantic, not task=depth"):
        get_cfg(overrides={"variable_batch": True, "task": "depth"})


# ------------------------------------------------------------------------------------------------ compare
def test_compare_reports_dense_task_metrics(tmp_path: Path):
    """compare's task-keyed hook: a semantic (depth) validation gives mIoU (delta1, AbsRel) columns, the plot's
    accuracy axis and a models' accuracy; detection keeps mAP."""
    from yolo_mobilevit.tools import task_metrics
    from yolo_mobilevit.tools.compare import accuracy_key, columns, plot

    semantic = types.SimpleNamespace(results_dict={"metrics/mIoU": 0.25, "metrics/pixel_acc": 0.5, "fitness": 0.25})
    depth = types.SimpleNamespace(results_dict={"metrics/delta1": 0.7, "metrics/abs_rel": 0.2, "metrics/rmse": 1.5})
    assert task_metrics.from_val(semantic) == {"task": "semantic", "miou": 0.25, "pixel_acc": 0.5}
    assert task_metrics.from_val(depth) == {"task": "depth", "delta1": 0.7, "abs_rel": 0.2, "rmse": 1.5}
    assert task_metrics.from_val(types.SimpleNamespace(results_dict={"metrics/mAP50(B)": 0.1})) == {}
    rows = [
        {"model": "yolo26n-sem", "ort_ms_b1": 3.0, **task_metrics.from_val(semantic)},
        {"model": "yolo26n-mobilevit-sem", "ort_ms_b1": 4.0, "task": "semantic", "miou": 0.3, "pixel_acc": 0.6},
    ]
    assert all(task_metrics.has_accuracy(r) for r in rows) and not task_metrics.has_accuracy({"model": "x"})
    headers = [h for _, h, _ in columns(64, [1], True, False, True, True, task_metrics.columns(rows))]
    assert headers[-3:] == ["train img/s", "mIoU", "pixel acc"] and "mAP50" not in headers
    assert "mAP50" in [h for _, h, _ in columns(64, [1], True, False, True, True, task_metrics.columns([{}]))]
    assert accuracy_key(rows) == ("miou", "mIoU (Ultralytics val, metrics/mIoU)")
    assert plot(rows, "ort_ms_b1", "latency", "semantic", tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    depth_rows = [{"model": "d", "task": "depth", "delta1": 0.7}]
    assert accuracy_key(depth_rows)[0] == "delta1"
    assert [key for key, _, _ in task_metrics.columns(depth_rows)] == ["delta1", "abs_rel", "rmse"]


@pytest.mark.slow
@needs("semantic")
def test_compare_semantic_against_stock(task_data: dict[str, Path], tmp_path: Path):
    """``yolo-mobilevit compare`` on stock yolo26n-sem and a plugin -sem config: mIoU beside params, GFLOPs and
    latency, and the plot."""
    import csv
    import sys

    from conftest import run

    args = [
        str(Path(sys.executable).with_name("yolo-mobilevit")), "compare",
        "yolo26n-sem.yaml", str(CFG / SEMANTIC_CFG),
        "--data", str(task_data["masks"]),
        "--imgsz", "64", "--epochs", "1", "--batch", "4", "--device", "cpu",
        "--batches", "1", "--repeats", "2", "--warmup", "1", "--no-simplify",
        "--project", str(tmp_path / "runs"), "--name", "sem", "workers=0", "plots=False",
    ]  # fmt: skip
    run(args, cwd=tmp_path)
    save_dir = tmp_path / "runs" / "sem"
    with (save_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["model"] for r in rows) == ["yolo26n-mobilenetv3-small-sem", "yolo26n-sem"]
    assert list(rows[0])[-3:] == ["train_img_s", "miou", "pixel_acc"]
    for r in rows:
        assert all(float(r[k]) > 0 for k in ("params_M", "gflops_ultralytics", "cpu_ms_b1", "ort_ms_b1")), r
        assert 0 <= float(r["miou"]) <= 1 and 0 <= float(r["pixel_acc"]) <= 1, r
    table = (save_dir / "results.md").read_text()
    assert "| mIoU | pixel acc |" in table and "FAILED" not in table and "metrics/mIoU" in table
    assert (save_dir / "map_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
