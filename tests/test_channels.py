"""Images with other than three channels (the data YAML's ``channels``): every shipped config builds and runs on
grayscale, ImageNorm's statistics follow the channel count (or are refused by row), RGB stems convert for gray."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DATASETS, SHIPPED_CONFIGS, train_args, yolo
from mobilevit_refs import config, reference
from ultralytics.nn.tasks import DetectionModel

from yolo_mobilevit.convert import map_weights
from yolo_mobilevit.convert.core import detect_format
from yolo_mobilevit.errors import YamlRowError
from yolo_mobilevit.modules.layers import NORM_PRESETS, ImageNorm

CFG = Path(__file__).resolve().parents[1] / "cfg"
DETECT = [n for n in SHIPPED_CONFIGS if not any(t in n for t in ("-cls", "-seg", "-pose", "-obb"))]


@pytest.mark.parametrize("name", DETECT)
def test_detect_config_builds_and_runs_on_grayscale(name: str) -> None:
    model = DetectionModel(str(CFG / name), ch=1, verbose=False).eval()
    with torch.no_grad():
        pred = model(torch.rand(1, 1, 64, 64))[0]
    assert pred.shape[:2] == (1, 4 + model.yaml["nc"])
    for norm in (m for m in model.modules() if isinstance(m, ImageNorm)):
        mean, std = NORM_PRESETS[norm.preset]
        assert norm.mean.shape == norm.std.shape == (1, 1, 1, 1)
        assert norm.mean.item() == pytest.approx(sum(mean) / 3) and norm.std.item() == pytest.approx(sum(std) / 3)


def test_rgb_preset_on_four_channels_is_refused_by_row() -> None:
    path = CFG / "yolov8-mobilenetv2.yaml"
    with pytest.raises(YamlRowError) as info:
        DetectionModel(str(path), ch=4, verbose=False)
    message = str(info.value)
    assert f"{path}: layer 0 (backbone row 0) [-1, 1, 'ImageNorm', ['imagenet']]" in message
    assert "4-channel" in message and "'inception'" in message and "'raw'" in message


def test_uniform_preset_applies_to_every_channel(tmp_path: Path) -> None:
    d = yaml.safe_load((CFG / "yolov8-mobilenetv1.yaml").read_text())
    assert d["backbone"][0][2:] == ["ImageNorm", ["inception"]]
    model = DetectionModel(d, ch=4, verbose=False).eval()
    norm = model.model[0]
    assert norm.mean.shape == (1, 4, 1, 1) and torch.equal(norm.mean, torch.full((1, 4, 1, 1), 0.5))
    x = torch.rand(1, 4, 64, 64)
    assert torch.allclose(norm(x), (x - 0.5) / 0.5)
    with torch.no_grad():
        assert model(x)[0].shape[0] == 1


def test_rgb_stem_weights_are_summed_for_gray() -> None:
    source = reference("mobilevit_xxs").state_dict()
    model = DetectionModel(str(config("mobilevit_xxs")), ch=1, verbose=False)
    mapped, _ = map_weights(source, model, detect_format(source))
    stem = next(k for k, v in model.state_dict().items() if v.ndim == 4 and v.shape[1] == 1)
    (rgb,) = [v for v in source.values() if v.ndim == 4 and v.shape[1] == 3]
    assert torch.equal(mapped[stem], rgb.sum(dim=1, keepdim=True))
    assert all(v.shape == model.state_dict()[k].shape for k, v in mapped.items())


@pytest.mark.slow
def test_yolo_train_on_grayscale_coco8(tmp_path: Path) -> None:
    data = tmp_path / "coco8"
    shutil.copytree(DATASETS / "coco8", data)
    spec = yaml.safe_load((data / "coco8.yaml").read_text())
    spec.update(path=str(data), channels=1)
    (data / "coco8.yaml").write_text(yaml.safe_dump(spec))
    args = [
        a for a in train_args(CFG / "yolov8-mobilenetv3-small.yaml", tmp_path / "runs") if not a.startswith("data=")
    ]
    yolo(*args, f"data={data / 'coco8.yaml'}", cwd=tmp_path)
    best = tmp_path / "runs" / "train" / "weights" / "best.pt"
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    model = ckpt["model"]
    assert model.yaml["channels"] == 1 and model.model[0].mean.shape == (1, 1, 1, 1)
    with torch.no_grad():
        assert model.float().eval()(torch.rand(1, 1, 64, 64))[0].shape[0] == 1


def test_rgb_plugin_checkpoint_transfers_to_a_grayscale_config() -> None:
    torch.manual_seed(0)
    rgb = DetectionModel(str(CFG / "yolov8n-mobilevit-xxs.yaml"), verbose=False)
    gray = DetectionModel(str(CFG / "yolov8n-mobilevit-xxs.yaml"), ch=1, verbose=False)
    gray.load(rgb, verbose=False)
    ours, theirs = gray.state_dict(), rgb.state_dict()
    (stem,) = [k for k, v in theirs.items() if v.ndim == 4 and v.shape[1] == 3]
    assert torch.equal(ours[stem], theirs[stem].sum(dim=1, keepdim=True))
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if k != stem)
