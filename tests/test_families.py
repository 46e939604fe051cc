"""The family registry: every tool reads its families from one spec each.

The built-in specs agree with what ships (each config is one family's, its ``backbone_weights`` among that family's
defaults, each source format owned once). A toy family, added the way a new family is (a row module, a spec and a
config), is picked up by every tool: the builder, ``feature_info``, ``convert``, the export traits, ``compare``, the
config listing and ``doctor``; unregistering it leaves the registries as they were."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CFG

from yolo_mobilevit import configs, families
from yolo_mobilevit.convert import FORMATS, ConversionError, convert_checkpoint, formats
from yolo_mobilevit.export import has_attention, nncf_transformer
from yolo_mobilevit.modules import YAML_MODULES
from yolo_mobilevit.tools import compare, doctor

# ---- the built-in families agree with what ships ----------------------------------------------------------------


def test_every_shipped_config_is_one_familys_and_names_its_default_weights():
    """Recognised by its rows, the same family its name says; its backbone_weights are among the family's, and it
    normalises its input as those weights need."""
    shipped = sorted(CFG.glob("*.yaml"))
    assert shipped
    for path in shipped:
        spec = families.family_of_config(path)
        assert spec is not None, path.name
        assert families.family_of_name(path.name) is spec, path.name
        cfg = yaml.safe_load(path.read_text())
        weights = {w.name: w for w in spec.weights}.get(cfg.get("backbone_weights"))
        assert weights is not None, f"{path.name}: {cfg.get('backbone_weights')}"
        norms = [row[3][0] for row in cfg["backbone"] if row[2] == "ImageNorm"]
        assert norms == ([weights.norm] if weights.norm else []), path.name
    v1 = families.configs(families.family("mobilenetv1"), CFG)
    assert v1 and v1 == [p for p in shipped if "-mobilenetv1" in p.name]


def test_each_source_format_belongs_to_one_family():
    owned = [name for spec in families.families() for name in spec.formats]
    assert len(owned) == len(set(owned))
    assert sorted(formats()) == sorted(owned)


def test_default_weights_colour_order_and_normalisation_fit_their_format():
    """timm and torchvision weights are RGB (the ml-cvnets v0.1 MobileViT format is the BGR one); a MobileNet
    converter accepts the normalisation the default weights name."""
    from yolo_mobilevit.convert.mobilenet import FORMATS as MOBILENET_FORMATS

    norms = {fmt.name: fmt.norms for fmt in MOBILENET_FORMATS}  # the presets each MobileNet converter accepts
    assert all(w.norm in norms[w.format] for spec in families.families() for w in spec.weights if w.norm)
    orders = {w.name: formats()[w.format].input_order for spec in families.families() for w in spec.weights}
    assert set(orders.values()) == {"rgb"}
    assert {name for name, fmt in FORMATS.items() if fmt.input_order == "bgr"} == {"cvnets-mobilevit"}
    assert families.family("mobilevit").default_weights("xs").name == "timm/mobilevit_xs.cvnets_in1k"
    with pytest.raises(KeyError, match=r"MobileViT has no default weights 'xl'; it has \['xxs', 'xs', 's'\]"):
        families.family("mobilevit").default_weights("xl")


def test_export_traits_of_the_builtin_families():
    """Attention for INT8: MobileViT v1/v2 and Mobile-Former; NNCF's transformer mode: MobileViT v1/v2 only."""
    from yolo_mobilevit.modules.mobileformer import Former
    from yolo_mobilevit.modules.mobilevit import MobileViTBlock
    from yolo_mobilevit.modules.mobilevitv2 import MobileViTv2Block

    assert set(families.attention_classes()) == {MobileViTBlock, MobileViTv2Block, Former}
    assert set(families.attention_classes(openvino_transformer=True)) == {MobileViTBlock, MobileViTv2Block}


def test_rows_belong_to_one_family_and_mixed_backbones_are_refused():
    with pytest.raises(ValueError, match="rows \\['MV2Stage'\\] already belong to MobileNetV2"):
        families.register_family(families.FamilySpec(key="other", name="Other", rows=("MV2Stage",)))
    assert families.family_of_rows(["ConvBNAct", "MV2Stage", "MobileViTStage"]).name == "MobileViT"
    assert families.family_of_rows(["ConvBNAct", "MV2Stage"]).name == "MobileNetV2"
    assert families.family_of_rows(["Conv", "C2f", "SPPF"]) is None
    with pytest.raises(ValueError, match="several families: MobileViT .*, Mobile-Former"):
        families.family_of_rows(["MobileViTStage", "MobileFormerBlock"])
    with pytest.raises(ValueError, match="family key 'Mobile-X'"):
        families.FamilySpec(key="Mobile-X", name="X", rows=())


def test_names_match_whole_tokens_not_substrings():
    """No key shadows another: mobilevitv2 is not MobileViT, whatever the registration order."""
    assert [families.group_of_name(n)[0] for n in ("yolov8n-mobilevitv2-050", "yolo26n-mobilevit-xxs", "best")] == [
        "MobileViTv2",
        "MobileViT",
        "stock YOLO",
    ]


# ---- a toy family, added as a new family is ---------------------------------------------------------------------

TOY_MODULE = '''
"""ToyViT: a strided conv, then one single-head attention over the map's pixels (the toy family's row module)."""

from typing import ClassVar

import torch
from torch import nn

from yolo_mobilevit.modules.layers import ConvBNAct
from yolo_mobilevit.modules.rows import Arg, YamlModule


class ToyAttention(nn.Module):
    """Single-head self-attention over the pixels, residual. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).chunk(3, dim=-1)
        y = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1) @ v
        return x + y.transpose(1, 2).reshape(b, c, h, w)


class ToyStage(YamlModule):
    """YAML ``[-1, 1, ToyStage, [c2, stride]]``: (B, c1, H, W) -> (B, c2, H/stride, W/stride)."""

    yaml_args: ClassVar = (Arg("stride", int, 2, (1, 2)),)

    def __init__(self, c1: int, c2: int, n: int = 1, stride: int = 2) -> None:
        super().__init__()
        self.conv = ConvBNAct(c1, c2, kernel=3, stride=stride)
        self.attn = ToyAttention(c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x))
'''

TOY_CONVERTER = '''
"""The toy family's converter: its reference keeps the stem as ``stem.*``, the stages as ``stages.<k>.*``."""

from yolo_mobilevit.convert import SourceFormat, map_by_name, register_format


def map_toy(source, model):
    return map_by_name(source, model, lambda k, m, local: f"stem.{local}" if k == 0 else f"stages.{k - 1}.{local}")


register_format(
    SourceFormat("toy-reference", "toy reference backbone", lambda sd: "stages.0.attn.qkv.weight" in sd, map_toy)
)
'''

TOY_CONFIG = """\
# ToyViT: a stem and four toy stages, P3-P5 into YOLOv8's Detect
nc: 2
backbone_weights: toyhub/toyvit_s # the toy family's default weights (never fetched here)
backbone:
  - [-1, 1, ConvBNAct, [16, 3, 2]] # 0-P1/2
  - [-1, 1, ToyStage, [24, 2]] # 1-P2/4
  - [-1, 1, ToyStage, [32, 2]] # 2-P3/8
  - [-1, 1, ToyStage, [48, 2]] # 3-P4/16
  - [-1, 1, ToyStage, [64, 2]] # 4-P5/32
head:
  - [[2, 3, 4], 1, Detect, [nc]] # 5
"""

TOY_SPEC = families.FamilySpec(
    key="toyvit",
    name="ToyViT",
    rows=("ToyStage",),
    converter="toy_family_convert",
    formats=("toy-reference",),
    weights=(families.Weights("s", "toyhub/toyvit_s", "toy-reference"),),
    attention=("toy_family:ToyAttention",),
    openvino_transformer=True,
    flagships=("yolov8-toyvit.yaml",),
    export_config="yolov8-toyvit.yaml",
    marker="*",
)


def registries() -> tuple[list[str], list[str], list[str]]:
    return list(families.FAMILIES), sorted(FORMATS), sorted(YAML_MODULES)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The toy family's module importable as ``toy_family``, its spec registered and its config in a folder of its
    own; everything removed afterwards. Yields the config."""
    folder = tmp_path_factory.mktemp("toy_family")
    (folder / "toy_family.py").write_text(textwrap.dedent(TOY_MODULE))
    (folder / "toy_family_convert.py").write_text(textwrap.dedent(TOY_CONVERTER))
    (folder / "cfg").mkdir()
    cfg = folder / "cfg" / "yolov8-toyvit.yaml"
    cfg.write_text(TOY_CONFIG)
    sys.path.insert(0, str(folder))
    try:
        import toy_family  # noqa: F401 - defines the YAML row (a YamlModule subclass registers itself)

        families.register_family(TOY_SPEC)
        yield cfg
    finally:
        remove_toy()
        sys.path.remove(str(folder))


def remove_toy() -> None:
    """Unregister the toy family and remove what its modules registered (its YAML row, its source format)."""
    if TOY_SPEC.key in families.FAMILIES:
        families.unregister_family(TOY_SPEC.key)
    YAML_MODULES.pop("ToyStage", None)
    FORMATS.pop("toy-reference", None)
    sys.modules.pop("toy_family", None)
    sys.modules.pop("toy_family_convert", None)


def test_toy_family_builds_with_inferred_channels_and_feature_info(toy: Path):
    from ultralytics import YOLO

    from yolo_mobilevit import feature_info, feature_taps

    model = YOLO(str(toy)).model
    rows = feature_info(model)
    assert [(r["module"], r["channels"], r["reduction"]) for r in rows] == [
        ("ConvBNAct", 16, 2),
        ("ToyStage", 24, 4),
        ("ToyStage", 32, 8),
        ("ToyStage", 48, 16),
        ("ToyStage", 64, 32),
    ]
    assert feature_taps(model) == {"P3": 2, "P4": 3, "P5": 4}
    detect = model.model[-1]
    assert [branch[0].conv.in_channels for branch in detect.cv2] == [32, 48, 64]  # channels inferred, not written
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out[0].shape == (1, 4 + 2, 8 * 8 + 4 * 4 + 2 * 2)


def toy_reference(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A reference state dict in the toy layout, with values of its own (not the model's)."""
    from yolo_mobilevit.convert import weighted_rows

    generator = torch.Generator().manual_seed(0)
    source = {}
    for k, (_, module) in enumerate(weighted_rows(model)):
        prefix = "stem" if k == 0 else f"stages.{k - 1}"
        for local, tensor in module.state_dict().items():
            random = torch.rand(tensor.shape, generator=generator) if tensor.is_floating_point() else tensor + 1
            source[f"{prefix}.{local}"] = random.to(tensor.dtype)
    return source


def test_toy_family_converts_strictly(toy: Path, tmp_path: Path):
    """Its converter module is imported through the spec; every reference tensor lands where it belongs, and a
    reference with a tensor the config has no place for is refused."""
    from ultralytics import YOLO

    model = YOLO(str(toy)).model
    source = toy_reference(model)
    torch.save(source, tmp_path / "toy.pth")
    assert "toy_family_convert" not in sys.modules  # imported by formats(), named by the spec
    assert "toy-reference" in formats() and "toy_family_convert" in sys.modules
    report = convert_checkpoint(tmp_path / "toy.pth", toy, tmp_path / "toy.pt", verbose=False)
    assert report.format == "toy-reference"
    assert report.loaded_params == sum(p.numel() for p in model.model[:5].parameters())  # the whole backbone
    converted = YOLO(str(tmp_path / "toy.pt")).model.state_dict()
    for key, tensor in source.items():  # stem.* -> model.0.*, stages.<k>.* -> model.<k + 1>.*
        prefix, local = key.split(".", 1) if key.startswith("stem.") else key.split(".", 2)[1:]
        layer = 0 if prefix == "stem" else int(prefix) + 1
        assert torch.equal(converted[f"model.{layer}.{local}"], tensor), key
    torch.save({**source, "stages.4.attn.qkv.weight": torch.zeros(64 * 3, 64)}, tmp_path / "extra.pth")
    with pytest.raises(ConversionError, match="stages.4.attn.qkv.weight"):
        convert_checkpoint(tmp_path / "extra.pth", toy, verbose=False)


def test_toy_family_export_traits(toy: Path):
    """Its attention block joins the INT8 sets (ONNX Runtime / LiteRT float attention, NNCF's transformer mode)."""
    from toy_family import ToyAttention
    from ultralytics import YOLO

    assert ToyAttention in families.attention_classes()
    assert ToyAttention in families.attention_classes(openvino_transformer=True)
    model = YOLO(str(toy)).model
    assert has_attention(model) and nncf_transformer(model)
    assert not has_attention(YOLO(str(CFG / "yolov8-mobilenetv2.yaml")).model)


def test_toy_family_in_compare_and_export_checks(toy: Path):
    assert compare.family("yolov8n-toyvit") == ("ToyViT", "*")
    assert compare.family(toy.stem) == ("ToyViT", "*")
    assert compare.default_models()[-1] == "yolov8-toyvit.yaml"
    assert ("ToyViT", "*") in compare.FAMILIES and "yolov8-toyvit.yaml" in compare.DEFAULT_MODELS
    assert families.export_configs()["toyvit"] == "yolov8-toyvit.yaml"
    assert "toyhub" in families.weight_libraries()


def test_toy_family_in_config_listing_and_doctor(toy: Path, monkeypatch: pytest.MonkeyPatch):
    """With its config folder as the shipped configs: listed under its family, counted and named by doctor."""
    monkeypatch.setattr(configs, "config_dir", lambda: toy.parent)
    assert families.configs(TOY_SPEC, configs.config_dir()) == [toy]
    assert families.family_of_config(toy) is TOY_SPEC
    assert configs.measure(toy, imgsz=64)["family"] == "ToyViT"
    report = doctor.Report()
    doctor.check_families(report)
    assert report.problems == []
    assert "ToyViT (1 configs)" in report.lines[0] and "MobileViT (0 configs)" in report.lines[0]
    assert doctor.config_family(str(toy)) == "ToyViT"


def test_unregistering_a_family_restores_the_registries(toy: Path):
    """What registering and unregistering the toy family adds is gone afterwards (the module fixture's teardown
    does the same for the tests above)."""
    with_toy = registries()
    assert families.unregister_family(TOY_SPEC.key) is TOY_SPEC
    remove_toy()
    without = registries()
    assert "toyvit" not in without[0] and "toy-reference" not in without[1] and "ToyStage" not in without[2]
    assert [set(a) - set(b) for a, b in zip(with_toy, without)] == [{"toyvit"}, {"toy-reference"}, {"ToyStage"}]
    assert compare.family("yolov8n-toyvit") == ("stock YOLO", "s")
