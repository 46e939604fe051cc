"""MobileViTv2 modules and configs: timm's parameter layout per stage, size preservation, export."""

from __future__ import annotations

import pytest
import torch
from helpers import count_params
from mobilevit_refs import CONFIGS, config, timm
from ultralytics.nn.tasks import DetectionModel

from yolo_mobilevit.integration import YamlRowError
from yolo_mobilevit.modules import MobileViTv2Block, MobileViTv2Stage
from yolo_mobilevit.tools.features import backbone_features

V2 = [name for name in CONFIGS if name.startswith("mobilevitv2_")]


@pytest.mark.parametrize("name", V2)
def test_stage_params_equal_timm(name: str) -> None:
    model = DetectionModel(str(config(name)), verbose=False)
    ref = timm.create_model(name, num_classes=0)
    ours = [count_params(model.model[i]) for i in range(6)]
    theirs = [count_params(ref.stem)] + [count_params(s) for s in ref.stages]
    assert ours == theirs
    assert sum(ours) == count_params(ref)  # v2 has no final conv: the whole backbone transfers


@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (5, 4), (1, 1)])
def test_block_keeps_any_size(hw: tuple[int, int]) -> None:
    block = MobileViTv2Block(16, 8, 2).eval()
    assert block(torch.rand(2, 16, *hw)).shape == (2, 16, *hw)


def test_odd_maps_keep_size_where_timm_grows() -> None:
    model = DetectionModel(str(config("mobilevitv2_050")), verbose=False).eval()
    with torch.no_grad():
        for h, w in [(200, 136), (224, 160)]:  # odd maps at P3/P4/P5 (timm/cvnets would grow them)
            feats = backbone_features(model, torch.rand(1, 3, h, w))
            assert [tuple(f.shape[-2:]) for f in feats.values()] == [(-(-h // s), -(-w // s)) for s in (8, 16, 32)]
        assert model(torch.rand(1, 3, 224, 160))[0].shape[-1] > 0  # P5 7x5: the neck's Concat still fits


def test_even_block_matches_timm_block() -> None:
    """One block against timm's with the same weights (names mapped by the converter's rules)."""
    from yolo_mobilevit.convert.mobilevit import timm_key

    torch.manual_seed(0)
    ref = timm.create_model("mobilevitv2_050").stages[2].eval()
    stage = MobileViTv2Stage(64, 128, 1, d=64, depth=2).eval()
    source = {f"stages.2.{k}": v for k, v in ref.state_dict().items()}
    stage.load_state_dict({k: source[timm_key(3, stage, k)] for k in stage.state_dict()})
    x = torch.rand(2, 64, 16, 12)
    with torch.no_grad():
        assert torch.allclose(stage(x), ref(x), rtol=0, atol=1e-5)


def test_yaml_row_errors_name_the_row(tmp_path) -> None:
    text = config("mobilevitv2_050").read_text().replace("[128, 64, 2]", "[128, 64, 0]")
    path = tmp_path / "yolov8-bad.yaml"
    path.write_text(text)
    with pytest.raises(YamlRowError, match=r"layer 3 .*\[128, 64, 0\].*MobileViTv2Stage expects depth >= 1, got 0"):
        DetectionModel(str(path), verbose=False)


def test_onnx_export_matches(tmp_path) -> None:
    import onnx
    import onnxruntime as ort

    stage = MobileViTv2Stage(16, 32, 1, d=16, depth=1).eval()
    x = torch.rand(1, 16, 20, 20)
    path = tmp_path / "v2.onnx"
    torch.onnx.export(stage, (x,), str(path), opset_version=17, dynamo=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Col2Im", "Im2Col"}
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input.1": x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), stage(x), atol=1e-4)
