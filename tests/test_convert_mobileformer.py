"""Official Mobile-Former checkpoints -> every shipped Mobile-Former config, built from the official tensor list.

The source state dicts are random tensors laid out exactly as ``shared/reference/mobileformer-official-keys.txt``
lists them, at every width. That checks the mapping (every tensor lands, shapes agree, strict refusals); parity with
the official forward (P3/P4/P5, tokens, logits) is tests/test_mobileformer_reference.py's, against the official code's
outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from yolo_mobilevit.convert import ConversionError, map_weights
from yolo_mobilevit.convert.core import build_model, detect_format
from yolo_mobilevit.convert.mobileformer import WIDTHS

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT.parent / "shared" / "reference" / "mobileformer-official-keys.txt"


@pytest.fixture(autouse=True, scope="module")
def _key_file_present() -> None:
    if not KEYS.is_file():
        pytest.fail(f"{KEYS} (the shared Mobile-Former key list) is missing")


def official_layout(width: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the official ``mobile_former_<width>`` from the key file."""
    layout, current = {}, None
    for line in KEYS.read_text().splitlines():
        if line.startswith("## "):
            current = line.split()[1].rstrip(":")
            continue
        if current == f"mobile_former_{width}" and line and not line.startswith("#"):
            name, shape, dtype = line.split("\t")
            layout[name] = (tuple(int(s) for s in re.findall(r"\d+", shape)), dtype)
    assert layout, f"no tensors for mobile_former_{width} in {KEYS}"
    return layout


def official_state_dict(width: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout; BN statistics random too (randn means, positive variances)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, (shape, dtype) in official_layout(width).items():
        if dtype == "int64":
            sd[name] = torch.randint(1, 1000, shape, generator=g)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[name] = torch.randn(shape, generator=g)
    return sd


def _is_backbone(name: str) -> bool:
    return name.startswith(("tokens.", "stem.", "features."))


@pytest.mark.parametrize("width", WIDTHS)
def test_every_official_tensor_lands(width):
    source = official_state_dict(width)
    model = build_model(ROOT / "cfg" / f"yolov8-mobileformer-{width}.yaml")
    fmt = detect_format(source)
    assert fmt.name == "official-mobileformer"
    mapped, report = map_weights(source, model, fmt)
    backbone = [k for k in source if _is_backbone(k)]
    assert len(mapped) == len(backbone)  # every backbone tensor used once, every plugin backbone tensor loaded
    assert sorted(report.loaded.values()) == sorted(backbone)
    assert not report.unloaded_backbone
    assert {k for k in report.unused_source} == {k for k in source if not _is_backbone(k)}
    inverse = {v: k for k, v in report.loaded.items()}
    for name in (
        "tokens.weight",
        "stem.0.weight",
        "features.0.conv.4.weight",
        "features.2.local_global.alpha.0.weight",
    ):
        assert torch.equal(mapped[inverse[name]], source[name]), name
    last = max(int(k.split(".")[1]) for k in backbone if k.startswith("features."))
    for part in ("global_block.channel_mlp.weight", "global_local.proj.weight", "conv2.1.running_var"):
        name = f"features.{last}.{part}"
        assert torch.equal(mapped[inverse[name]], source[name]), name


def test_wrong_width_is_refused():
    model = build_model(ROOT / "cfg" / "yolov8-mobileformer-151m.yaml")
    fmt = detect_format(official_state_dict("214m"))
    with pytest.raises(
        ConversionError,
        match=r"(?s)tensor shapes differ.*<- features\.1\.conv2\.0\.weight: checkpoint \(20, 72, 1, 1\), config \(16, 72, 1, 1\)",
    ):
        map_weights(official_state_dict("214m"), model, fmt)
    with pytest.raises(ConversionError, match=r"config has 11 Mobile-Former blocks .* checkpoint has 8"):
        map_weights(official_state_dict("26m"), model, fmt)


def test_missing_tensor_is_refused():
    source = official_state_dict("26m")
    del source["features.3.hyper2.hyper.2.weight"]
    model = build_model(ROOT / "cfg" / "yolov8-mobileformer-26m.yaml")
    with pytest.raises(
        ConversionError,
        match=r"1 backbone tensors of the config have no source tensor: model\.5\.blocks\.0\.mobile\.act2\.hyper\.2\.weight",
    ):
        map_weights(source, model, detect_format(source))


@pytest.mark.parametrize("wrapper", ["bare", "state_dict", "model", "module."])
def test_round_trip_through_pretrained_file(tmp_path, monkeypatch, wrapper):
    from ultralytics import YOLO

    source = official_state_dict("52m", seed=1)
    if wrapper == "module.":
        obj = {f"module.{k}": v for k, v in source.items()}
    else:
        obj = source if wrapper == "bare" else {wrapper: source, "epoch": 300}
    file = tmp_path / "mobile_former_52m.pt"
    torch.save(obj, file)
    model = YOLO(str(ROOT / "cfg" / "yolov8-mobileformer-52m.yaml")).load(str(file))
    ours = model.model.state_dict()
    mapped, _report = map_weights(
        source, build_model(ROOT / "cfg" / "yolov8-mobileformer-52m.yaml"), detect_format(source)
    )
    assert len(mapped) == sum(_is_backbone(k) for k in source)
    for target in mapped:
        assert torch.equal(ours[target].float(), mapped[target].float()), target


def test_classifier_token_dim_needs_tokens(tmp_path):
    from yolo_mobilevit.errors import YamlRowError

    text = (ROOT / "cfg" / "yolov8-mobileformer-151m-cls.yaml").read_text()
    row = "  - [-1, 2, MobileFormerBlock, [128, 6, 192]] # 11 hidden 768/768\n"
    bad = text.replace(row, row + "  - [-1, 1, MobileFormerTap, []]\n")
    assert bad != text
    cfg = tmp_path / "bad-cls.yaml"
    cfg.write_text(bad)
    with pytest.raises(YamlRowError, match=r"Classifier takes \(map, tokens\) from the row before it"):
        build_model(cfg)


def test_classifier_without_token_dim_refuses_tokens(tmp_path):
    from yolo_mobilevit.errors import YamlRowError

    text = (ROOT / "cfg" / "yolov8-mobileformer-151m-cls.yaml").read_text()
    bad = text.replace("0.2, True, 1.0e-5, 0.1, 192]]", "0.2]]")
    assert bad != text
    cfg = tmp_path / "bad-cls.yaml"
    cfg.write_text(bad)
    with pytest.raises(
        YamlRowError, match=r"Classifier reads layer 11, which hands on Mobile-Former's \(map, tokens\)"
    ):
        build_model(cfg)


def test_default_weights_come_from_the_mirror(tmp_path, monkeypatch):
    """backbone_weights: mobileformer/mobile_former_26m -> <mirror>/mobileformer/mobile_former_26m.pth, no network."""
    from yolo_mobilevit import pretrained, weights_store

    source = official_state_dict("26m", seed=4)
    mirror = tmp_path / "mirror" / "mobileformer"
    mirror.mkdir(parents=True)
    torch.save({"state_dict": source}, mirror / "mobile_former_26m.pth")
    monkeypatch.setenv(weights_store.MIRROR_ENV, str(mirror.parent))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setattr(weights_store, "cache_dir", lambda: tmp_path / "cache")
    model = build_model(ROOT / "cfg" / "yolov8-mobileformer-26m.yaml")
    assert model.yaml["backbone_weights"] == "mobileformer/mobile_former_26m"
    assert pretrained.load_default_weights(model, network=False) == sum(_is_backbone(k) for k in source)
    assert torch.equal(model.model[2].tokens.detach(), source["tokens.weight"])
    assert (tmp_path / "cache" / "mobileformer" / "mobile_former_26m.pth").is_file()


def test_classifier_pickled_before_token_dim_still_runs():
    """A Classifier unpickled from an older checkpoint lacks the token_dim attribute: it runs as a map-only head."""
    from yolo_mobilevit.modules import Classifier

    head = Classifier(16, 32, nc=5, mlp=24, act="hardswish").eval()
    del head.__dict__["token_dim"]
    with torch.no_grad():
        _probs, logits = head(torch.randn(2, 16, 4, 4))
    assert logits.shape == (2, 5)


def test_mobileformer_head_trains_on_a_batch_of_one():
    """A last training batch of one sample: the head's BatchNorm1d uses its running statistics instead of failing."""
    from yolo_mobilevit.modules import Classifier

    head = Classifier(16, 32, nc=5, mlp=24, act="hardswish", token_dim=8).train()
    logits = head((torch.randn(1, 16, 4, 4), torch.randn(1, 3, 8)))
    logits.sum().backward()
    assert logits.shape == (1, 5) and head.hidden.weight.grad is not None
    assert head((torch.randn(2, 16, 4, 4), torch.randn(2, 3, 8))).shape == (2, 5)


def test_no_head_leaves_the_whole_classifier_initialized():
    source = official_state_dict("151m")
    model = build_model(ROOT / "cfg" / "yolov8-mobileformer-151m-cls.yaml")
    mapped, report = map_weights(source, model, detect_format(source), head=False)
    assert not [k for k in mapped if k.startswith("model.12.")]
    assert sorted(report.unused_source) == sorted(k for k in source if not _is_backbone(k))
