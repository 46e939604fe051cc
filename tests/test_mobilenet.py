"""MobileNet V1/V2/V3 backbones: parity with torchvision and timm through the converter, configs, training."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from conftest import CFG, run, train_args, yolo
from torch import nn

from yolo_mobilevit.convert import formats, map_weights
from yolo_mobilevit.modules import ImageNorm, MobileNetV1Stage, MobileNetV3Stage, MV2Stage
from yolo_mobilevit.modules.layers import NORM_PRESETS

# config -> (layer indices of P3/P4/P5, channels at P3/P4/P5, index of the SPPF row that ends the backbone)
CONFIGS = {
    "mobilenetv1": ((4, 5, 6), (256, 512, 1024), 7),
    "mobilenetv2": ((4, 6, 8), (32, 96, 320), 9),
    "mobilenetv3-large": ((6, 11, 13), (40, 112, 160), 14),
    "mobilenetv3-small": ((4, 8, 10), (24, 48, 96), 11),
}
# (config, source format, reference model name, reference P3/P4/P5 indices (torchvision features / timm blocks), preset)
REFERENCES = [
    ("mobilenetv1", "timm-mobilenetv1", "mobilenetv1_100", (2, 3, 4), "inception"),
    ("mobilenetv2", "torchvision-mobilenet_v2", "mobilenet_v2", (6, 13, 17), "imagenet"),
    ("mobilenetv2", "timm-mobilenetv2", "mobilenetv2_100", (2, 4, 6), "imagenet"),
    ("mobilenetv3-large", "torchvision-mobilenet_v3_large", "mobilenet_v3_large", (6, 12, 15), "imagenet"),
    ("mobilenetv3-large", "timm-mobilenetv3_large", "mobilenetv3_large_100", (2, 4, 5), "imagenet"),
    ("mobilenetv3-small", "torchvision-mobilenet_v3_small", "mobilenet_v3_small", (3, 8, 11), "imagenet"),
    ("mobilenetv3-small", "timm-mobilenetv3_small", "mobilenetv3_small_100", (1, 3, 4), "imagenet"),
]
IDS = [r[1] for r in REFERENCES]


@functools.cache
def build(config: str, scale: str = "n") -> nn.Module:
    """The config's DetectionModel, fp32 eval (cached: building costs a stride-probing forward)."""
    from ultralytics import YOLO

    return YOLO(str(CFG / f"yolov8{scale}-{config}.yaml")).model.float().eval()


def make_reference(fmt_name: str, name: str) -> nn.Module:
    """A randomly initialised reference model (never downloads)."""
    if fmt_name.startswith("timm-"):
        return timm.create_model(name, pretrained=False)
    return torchvision.models.get_model(name, weights=None)


def backbone_taps(model: nn.Module, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    """Outputs of the (purely sequential) backbone rows ``taps``."""
    out = []
    for i, layer in enumerate(model.model[: taps[-1] + 1]):
        x = layer(x)
        if i in taps:
            out.append(x)
    return out


def reference_taps(ref: nn.Module, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    if hasattr(ref, "features"):  # torchvision
        stem, blocks = nn.Identity(), ref.features
    else:  # timm
        stem, blocks = nn.Sequential(ref.conv_stem, ref.bn1), ref.blocks
    x, out = stem(x), []
    for i, block in enumerate(blocks[: taps[-1] + 1]):
        x = block(x)
        if i in taps:
            out.append(x)
    return out


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine terms, so that a mis-mapped BN tensor or eps shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            ranges = {"running_mean": (-0.2, 0.2), "running_var": (0.5, 2.0), "weight": (0.5, 1.5), "bias": (-0.2, 0.2)}
            for name, (lo, hi) in ranges.items():
                t = getattr(m, name)
                t.data.copy_(torch.rand(t.shape, generator=generator) * (hi - lo) + lo)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(("config", "fmt_name", "ref_name", "ref_taps", "preset"), REFERENCES, ids=IDS)
def test_parity_with_reference(config: str, fmt_name: str, ref_name: str, ref_taps: tuple, preset: str) -> None:
    """Converted random weights give the reference's tap features (fp32, eval) from [0, 1] input."""
    taps, channels, _ = CONFIGS[config]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ref = make_reference(fmt_name, ref_name).eval()
    randomize_bn(ref, generator)
    model = build(config)
    source = ref.state_dict()
    fmt = formats()[fmt_name]
    assert [name for name, f in formats().items() if f.detect(source)] == [fmt_name]
    mapped, report = map_weights(source, model, fmt)
    assert not report.unloaded_backbone
    model.load_state_dict(mapped, strict=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM_PRESETS[preset])
    for size in (224, 640):
        x = torch.rand(1, 3, size, size, generator=generator)
        with torch.no_grad():
            ours, theirs = backbone_taps(model, x, taps), reference_taps(ref, (x - mean) / std, ref_taps)
        for stride, c, a, b in zip((8, 16, 32), channels, ours, theirs):
            assert tuple(a.shape) == (1, c, math.ceil(size / stride), math.ceil(size / stride))
            assert relative_error(a, b) < 1e-5, (size, stride, relative_error(a, b))


@pytest.mark.parametrize(("config", "fmt_name", "ref_name"), [r[:3] for r in REFERENCES], ids=IDS)
def test_backbone_parameter_count_matches_reference(config: str, fmt_name: str, ref_name: str) -> None:
    """Our backbone (up to P5, SPPF excluded) has exactly the parameters of the reference's converted part."""
    _, _, sppf = CONFIGS[config]
    ref = make_reference(fmt_name, ref_name)
    ignored = formats()[fmt_name].ignored
    expected = sum(p.numel() for name, p in ref.named_parameters() if not name.startswith(ignored))
    model = build(config)
    assert sum(p.numel() for p in model.model[:sppf].parameters()) == expected


def test_bn_settings_follow_the_reference() -> None:
    """V1/V2 BN eps 1e-5 momentum 0.1 (torchvision, timm); V3 eps 1e-3 momentum 0.01 (torchvision), and Ultralytics'
    initialize_weights leaves them alone."""
    for config, (eps, momentum) in {"mobilenetv2": (1e-5, 0.1), "mobilenetv3-small": (1e-3, 0.01)}.items():
        bns = [m for m in build(config).model[:4].modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(m.eps == eps and m.momentum == momentum for m in bns), config


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_builds_with_odd_sizes(config: str, scale: str) -> None:
    taps, channels, _ = CONFIGS[config]
    model = build(config, scale)
    assert isinstance(model.model[0], ImageNorm) and model.stride.tolist() == [8.0, 16.0, 32.0]
    assert {type(m) for m in model.model[2 : taps[-1] + 1]} <= {MobileNetV1Stage, MV2Stage, MobileNetV3Stage}
    width = {"n": 1, "s": 2}[scale]
    with torch.no_grad():
        outputs = backbone_taps(model, torch.rand(1, 3, 200, 328), taps)
        y = model(torch.rand(1, 3, 64, 96))  # full detector: Ultralytics pads inputs to multiples of 32
    for stride, c, t in zip((8, 16, 32), channels, outputs):
        assert tuple(t.shape) == (1, c * width, math.ceil(200 / stride), math.ceil(328 / stride))
    assert tuple(y[0].shape) == (1, 84, 8 * 12 + 4 * 6 + 2 * 3)


def test_image_norm_is_a_buffer_op() -> None:
    norm = ImageNorm("imagenet")
    assert not norm.state_dict() and [n for n, _ in norm.named_buffers()] == ["mean", "std"]
    x = torch.rand(2, 3, 5, 7)
    mean, std = NORM_PRESETS["imagenet"]
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(norm(x), expected)


def test_conversion_refuses_wrong_normalisation_and_structure() -> None:
    from yolo_mobilevit.convert import ConversionError

    source = torchvision.models.mobilenet_v2().state_dict()
    with pytest.raises(ConversionError, match="ImageNorm"):  # V1 config is built for timm's inception statistics
        formats()["torchvision-mobilenet_v2"].map_state_dict(source, build("mobilenetv1"))
    with pytest.raises(ConversionError, match="config block model.2.blocks.0 is"):
        formats()["torchvision-mobilenet_v3_large"].map_state_dict(
            torchvision.models.mobilenet_v3_large().state_dict(), build("mobilenetv3-small")
        )


def test_convert_checkpoint_file_end_to_end(tmp_path: Path) -> None:
    """A saved torchvision state_dict converts into an Ultralytics checkpoint whose backbone gives its features."""
    from yolo_mobilevit.convert import convert_checkpoint

    ref = torchvision.models.mobilenet_v3_small().eval()
    randomize_bn(ref, torch.Generator().manual_seed(1))
    torch.save(ref.state_dict(), tmp_path / "v3s.pth")
    cfg = CFG / "yolov8n-mobilenetv3-small.yaml"
    report = convert_checkpoint(tmp_path / "v3s.pth", cfg, tmp_path / "v3s.pt", verbose=False)
    assert report.format == "torchvision-mobilenet_v3_small" and not report.unloaded_backbone
    assert {k.split(".")[0] for k in report.unused_source} == {"features", "classifier"}
    model = torch.load(tmp_path / "v3s.pt", weights_only=False)["model"].float().eval()
    x = torch.rand(1, 3, 96, 160)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM_PRESETS["imagenet"])
    with torch.no_grad():
        ours = backbone_taps(model, x, CONFIGS["mobilenetv3-small"][0])
        theirs = reference_taps(ref, (x - mean) / std, (3, 8, 11))
    assert all(relative_error(a, b) < 1e-5 for a, b in zip(ours, theirs))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every MobileNet config trained one epoch on coco8 at imgsz 64 with the stock `yolo` command (the plugin is
    never imported explicitly)."""
    out = {}
    for config in sorted(CONFIGS):
        root = tmp_path_factory.mktemp(config)
        yolo(*train_args(CFG / f"yolov8n-{config}.yaml", root, name="x"), cwd=root)
        out[config] = root / "x" / "weights" / "best.pt"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_trains_from_plain_cli(config: str, trained: dict[str, Path]) -> None:
    assert trained[config].is_file()


@pytest.mark.slow
def test_trained_checkpoints_reload_in_fresh_process(trained: dict[str, Path], tmp_path: Path) -> None:
    """All trained checkpoints load in one new interpreter, keep ImageNorm and V3's BN settings, and predict."""
    code = (
        "import sys, torch\n"
        "from ultralytics import YOLO\n"
        "for path in sys.argv[1:]:\n"
        "    m = YOLO(path).model.float().eval()\n"
        "    assert type(m.model[0]).__name__ == 'ImageNorm', path\n"
        "    bn = m.model[1].bn\n"
        "    assert (bn.eps, bn.momentum) == ((1e-3, 0.01) if 'mobilenetv3' in m.yaml['yaml_file'] else (1e-5, 0.1))\n"
        "    y = m(torch.rand(1, 3, 64, 96))\n"
        "    print(path, tuple(y[0].shape))\n"
    )
    proc = run([sys.executable, "-c", code, *map(str, trained.values())], cwd=tmp_path)
    assert proc.stdout.count("(1, 84, 126)") == len(CONFIGS), proc.stdout
