"""The backbone families, one :class:`FamilySpec` each: what every tool needs to know about a family, in one place.

A family is its YAML rows (``modules/``), a spec registered here and its configs (``cfg/``). The spec says

- which YAML row classes are the family's own (``rows``; a config is the family's when its backbone uses them, see
  :func:`family_of_rows`), and whose rows it builds on (``extends``: MobileViT stacks MobileNetV2's ``MV2Stage``);
- which config-name token names it (``key``: ``yolo26n-mobilevitv2-050`` is ``mobilevitv2``; :func:`family_of_name`);
- its converter module and the source formats it registers there (``yolo-mobilevit convert``, ``pretrained=FILE``);
- its default ImageNet weights per variant (what the configs' ``backbone_weights`` name) with the source format that
  reads them, and so the colour order they were trained in (the format's ``input_order``), and the input
  normalisation they need (``norm``: the config's ``ImageNorm`` preset);
- its export traits: the blocks that hold attention (INT8 ONNX Runtime and LiteRT keep them in float, the export
  mode says ``transformer``) and whether OpenVINO's NNCF quantizes it as a transformer;
- its flagship configs (``yolo-mobilevit compare`` without models), the config that stands for it in export checks,
  and the group and marker it is plotted and listed under.

Every consumer reads the registry (``convert.registry.formats``, ``export.has_attention``/``nncf_transformer``,
``tools.compare.family``/``default_models``, the family column of ``yolo-mobilevit cfg``, ``doctor``), so
``register_family(spec)`` is all a new family adds beside its module and configs. This module imports no other
module of the package (the tools import it) and neither torch nor Ultralytics; classes named as ``"module:Class"``
are imported when first asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The group and plot marker of models that belong to no plugin family (``yolov8n``, ``yolo26n``).
STOCK = ("stock YOLO", "s")
#: Stock Ultralytics models ``compare`` runs before the families' flagships.
STOCK_FLAGSHIPS = ("yolo26n.yaml", "yolo11n.yaml", "yolov8n.yaml")


@dataclasses.dataclass(frozen=True)
class Weights:
    """Default ImageNet weights of one variant: ``name`` as a config's ``backbone_weights`` writes it
    (``timm/mobilevit_xs.cvnets_in1k``), the source ``format`` that reads the file (and records the colour order
    they were trained in, ``SourceFormat.input_order``), and ``norm``: the ``ImageNorm``
    preset a config's backbone starts with to feed them the statistics they were trained on (None: no ImageNorm row,
    the backbone takes Ultralytics' [0, 1] input as it is)."""

    variant: str
    name: str
    format: str
    norm: str | None = None


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """Everything the tools know about one backbone family (see the module docstring)."""

    key: str  # config-name token and short id: "mobilevitv2"
    name: str  # display name: "MobileViTv2"
    rows: tuple[str, ...]  # the family's own YAML row classes (each row class belongs to one family at most)
    extends: tuple[str, ...] = ()  # keys of families whose rows its configs also use
    converter: str | None = None  # module that registers the source formats on import
    formats: tuple[str, ...] = ()  # source format names (``yolo-mobilevit convert --format``)
    weights: tuple[Weights, ...] = ()  # default weights per variant
    attention: tuple[type | str, ...] = ()  # blocks holding attention: classes or "module:Class"
    openvino_transformer: bool = False  # NNCF ModelType.TRANSFORMER for OpenVINO INT8
    flagships: tuple[str, ...] = ()  # configs ``compare`` runs by default (bare names)
    export_config: str | None = None  # the config that stands for the family in export checks
    group: str = ""  # what ``compare`` plots and ``yolo-mobilevit cfg`` lists it under; default: ``name``
    marker: str = "o"  # matplotlib marker of the group in ``compare``'s plot

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*", self.key):
            raise ValueError(f"family key {self.key!r}: expected lower-case letters and digits (a config-name token)")
        if not self.group:
            object.__setattr__(self, "group", self.name)

    def attention_classes(self) -> tuple[type, ...]:
        """The ``attention`` blocks as classes (``"module:Class"`` entries imported now)."""
        return tuple(_resolve(a) for a in self.attention)

    def default_weights(self, variant: str) -> Weights:
        """The :class:`Weights` of ``variant``; KeyError naming the variants there are."""
        for w in self.weights:
            if w.variant == variant:
                return w
        raise KeyError(f"{self.name} has no default weights {variant!r}; it has {[w.variant for w in self.weights]}")


#: The registered families by key, in registration order (use :func:`families` to read it).
FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Add ``spec`` to the registry. A key is registered once, and a row class belongs to one family at most."""
    if spec.key in FAMILIES and FAMILIES[spec.key] != spec:
        raise ValueError(f"family {spec.key!r} is already registered ({FAMILIES[spec.key].name})")
    for other in FAMILIES.values():
        shared = set(other.rows) & set(spec.rows)
        if other.key != spec.key and shared:
            raise ValueError(f"family {spec.key!r}: rows {sorted(shared)} already belong to {other.name}")
    FAMILIES[spec.key] = spec
    return spec


def unregister_family(key: str) -> FamilySpec:
    """Remove family ``key`` from the registry (tests; a plugin that unloads). Its row classes and source formats
    stay where their modules registered them (``YAML_MODULES``, ``convert.FORMATS``): the caller removes those."""
    return FAMILIES.pop(key)


def families() -> list[FamilySpec]:
    """Every registered family, in registration order."""
    return list(FAMILIES.values())


def family(key: str) -> FamilySpec:
    """The family registered under ``key``; KeyError naming the registered ones."""
    try:
        return FAMILIES[key]
    except KeyError:
        raise KeyError(f"no family {key!r}; registered: {', '.join(FAMILIES)}") from None


# ---- recognising a config ---------------------------------------------------------------------------------------


def family_of_rows(rows: Iterable[str]) -> FamilySpec | None:
    """The family of a backbone that uses the row classes ``rows``: the family owning some of them that no other
    matched family extends (MobileViT's ``MobileViTStage`` beside MobileNetV2's ``MV2Stage`` is MobileViT). None when
    no family owns any; ValueError when the rows belong to several unrelated families."""
    used = set(rows)
    matched = [f for f in FAMILIES.values() if used & set(f.rows)]
    extended = {key for f in matched for key in f.extends}
    found = [f for f in matched if f.key not in extended]
    if len(found) > 1:
        owners = ", ".join(f"{f.name} ({sorted(used & set(f.rows))})" for f in found)
        raise ValueError(f"a backbone with rows of several families: {owners}")
    return found[0] if found else None


def backbone_rows(cfg: dict[str, Any] | str | Path) -> list[str]:
    """The module names of a model YAML's backbone rows (``cfg``: a YAML file or its loaded dict)."""
    if not isinstance(cfg, dict):
        import yaml

        cfg = yaml.safe_load(Path(cfg).read_text()) or {}
    return [r[2] for r in cfg.get("backbone") or () if isinstance(r, list) and len(r) == 4 and isinstance(r[2], str)]


def family_of_config(cfg: dict[str, Any] | str | Path) -> FamilySpec | None:
    """The family of a model YAML (a file or its dict), from the rows its backbone uses (:func:`family_of_rows`)."""
    return family_of_rows(backbone_rows(cfg))


def family_of_name(name: str) -> FamilySpec | None:
    """The family a model name says: the first ``-``/``_``/``.``-separated token that is a family key
    (``yolo26n-mobilevitv2-050`` -> MobileViTv2, ``yolov8n-mobilenetv3-large`` -> MobileNetV3); None for names
    that carry none (stock YOLO, ``best``). Tokens match whole, so no key shadows another."""
    tokens = re.split(r"[-_./\\]", Path(str(name)).name.lower())
    return next((FAMILIES[t] for t in tokens if t in FAMILIES), None)


def configs(spec: FamilySpec, folder: str | Path) -> list[Path]:
    """The configs of ``spec`` in ``folder`` (``yolo_mobilevit.configs.config_dir()`` for the shipped ones),
    recognised by their rows."""
    return [p for p in sorted(Path(folder).glob("*.yaml")) if family_of_config(p) == spec]


# ---- what the tools read ----------------------------------------------------------------------------------------


def converter_modules() -> list[str]:
    """The converter modules of the registered families, each once, in registration order."""
    return list(dict.fromkeys(f.converter for f in FAMILIES.values() if f.converter))


def attention_classes(openvino_transformer: bool | None = None) -> tuple[type, ...]:
    """The attention blocks of every family (INT8 ONNX Runtime / LiteRT keep them in float); with
    ``openvino_transformer=True`` only those of families NNCF quantizes as transformers."""
    return tuple(
        cls
        for f in FAMILIES.values()
        if openvino_transformer is None or f.openvino_transformer == openvino_transformer
        for cls in f.attention_classes()
    )


def weight_libraries() -> tuple[str, ...]:
    """Library prefixes of the families' default weights (``timm``, ``torchvision``, ``mobileformer``)."""
    return tuple(dict.fromkeys(w.name.partition("/")[0] for f in FAMILIES.values() for w in f.weights))


def compare_groups() -> list[tuple[str, str]]:
    """``[(group, marker), ...]`` of the plot legend: the families' groups in registration order, then stock YOLO."""
    return [*dict.fromkeys((f.group, f.marker) for f in FAMILIES.values()), STOCK]


def group_of_name(name: str) -> tuple[str, str]:
    """(group, marker) of a model name (:func:`family_of_name`); stock YOLO's for a name of no family."""
    spec = family_of_name(name)
    return (spec.group, spec.marker) if spec else STOCK


def group_of_config(cfg: dict[str, Any] | str | Path) -> tuple[str, str]:
    """(group, marker) of a model YAML (:func:`family_of_config`); stock YOLO's for a backbone of no family."""
    spec = family_of_config(cfg)
    return (spec.group, spec.marker) if spec else STOCK


def flagships() -> list[str]:
    """``compare``'s default models: stock YOLO, then each family's flagship configs."""
    return [*STOCK_FLAGSHIPS, *(c for f in FAMILIES.values() for c in f.flagships)]


def export_configs() -> dict[str, str]:
    """``{family key: config}`` of the families that name a config for export checks."""
    return {f.key: f.export_config for f in FAMILIES.values() if f.export_config}


def _resolve(target: type | str) -> type:
    if isinstance(target, type):
        return target
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ---- the families -----------------------------------------------------------------------------------------------


def _variants(template: str, fmt: str, variants: Iterable[str]) -> tuple[Weights, ...]:
    return tuple(Weights(v, template.format(v), fmt) for v in variants)


_MODULES = "yolo_mobilevit.modules"
_CONVERT = "yolo_mobilevit.convert"


def _mobilevit(key: str, name: str, variants: Iterable[str], flagships: tuple[str, ...], marker: str) -> FamilySpec:
    """MobileViT v1 or v2 (``key`` "mobilevit" / "mobilevitv2"), which share a layout: a ``{name}Stage`` row on
    MobileNetV2's MV2 blocks, attention in ``modules/{key}.py``'s ``{name}Block``, timm and ml-cvnets checkpoints
    (``convert/mobilevit.py``), timm's ``{key}_{variant}.cvnets_in1k`` weights, ``yolov8-{key}.yaml`` for exports."""
    return register_family(
        FamilySpec(
            key=key,
            name=name,
            rows=(f"{name}Stage",),
            extends=("mobilenetv2",),
            converter=f"{_CONVERT}.mobilevit",
            formats=(f"timm-{key}", f"cvnets-{key}"),
            weights=_variants(f"timm/{key}_{{}}.cvnets_in1k", f"timm-{key}", variants),
            attention=(f"{_MODULES}.{key}:{name}Block",),
            openvino_transformer=True,
            flagships=flagships,
            export_config=f"yolov8-{key}.yaml",
            marker=marker,
        )
    )


def _mobilenet(name: str, row: str, formats: tuple[str, ...], *weights: Weights, **traits: Any) -> FamilySpec:
    """A MobileNet generation (key: ``name`` in lower case): its stage row, converted by ``convert/mobilenet.py``,
    listed and plotted together as MobileNet."""
    spec = FamilySpec(name.lower(), name, (row,), converter=f"{_CONVERT}.mobilenet", formats=formats, weights=weights,
                      group="MobileNet", marker="^", **traits)  # fmt: skip
    return register_family(spec)


MOBILEVIT = _mobilevit(
    "mobilevit", "MobileViT", ("xxs", "xs", "s"), ("yolov8n-mobilevit.yaml", "yolo26n-mobilevit.yaml"), "o"
)
MOBILEVITV2 = _mobilevit(
    "mobilevitv2", "MobileViTv2", ("050", "075", "100", "125", "150", "175", "200"), ("yolo26n-mobilevitv2.yaml",), "D"
)
MOBILENETV1 = _mobilenet(
    "MobileNetV1",
    "MobileNetV1Stage",
    ("timm-mobilenetv1",),
    Weights("100", "timm/mobilenetv1_100.ra4_e3600_r224_in1k", "timm-mobilenetv1", "inception"),
)
MOBILENETV2 = _mobilenet(
    "MobileNetV2",
    "MV2Stage",
    ("torchvision-mobilenet_v2", "timm-mobilenetv2"),
    Weights("100", "torchvision/mobilenet_v2.IMAGENET1K_V2", "torchvision-mobilenet_v2", "imagenet"),
)
MOBILENETV3 = _mobilenet(
    "MobileNetV3",
    "MobileNetV3Stage",
    (
        "torchvision-mobilenet_v3_large",
        "torchvision-mobilenet_v3_small",
        "timm-mobilenetv3_large",
        "timm-mobilenetv3_small",
    ),
    Weights("large", "torchvision/mobilenet_v3_large.IMAGENET1K_V2", "torchvision-mobilenet_v3_large", "imagenet"),
    Weights("small", "torchvision/mobilenet_v3_small.IMAGENET1K_V1", "torchvision-mobilenet_v3_small", "imagenet"),
    flagships=("yolo26n-mobilenetv3-large.yaml",),
    export_config="yolov8-mobilenetv3-large.yaml",
)
MOBILEFORMER = register_family(
    FamilySpec(
        key="mobileformer",
        name="Mobile-Former",
        rows=("MobileFormerLite", "MobileFormerDown", "MobileFormerBlock", "MobileFormerTokens", "MobileFormerTap"),
        converter=f"{_CONVERT}.mobileformer",
        formats=("official-mobileformer",),
        weights=_variants(
            "mobileformer/mobile_former_{}",
            "official-mobileformer",
            ("26m", "52m", "96m", "151m", "214m", "294m", "508m"),
        ),
        attention=(f"{_MODULES}.mobileformer:Former",),
        # NNCF's transformer mode kept 34 % of the fp32 boxes of a trained Mobile-Former-151M against 78 % with
        # Ultralytics' settings (benchmarks/results/int8_matrix.md)
        openvino_transformer=False,
        flagships=("yolo26n-mobileformer-151m.yaml",),
        export_config="yolov8-mobileformer-26m.yaml",
        marker="P",
    )
)

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "Weights",
    "attention_classes",
    "backbone_rows",
    "compare_groups",
    "configs",
    "converter_modules",
    "export_configs",
    "families",
    "family",
    "family_of_config",
    "family_of_name",
    "family_of_rows",
    "flagships",
    "group_of_config",
    "group_of_name",
    "register_family",
    "unregister_family",
    "weight_libraries",
]
