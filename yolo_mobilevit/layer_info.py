"""What each layer of a built Ultralytics model reads and emits: the one reading of ``from`` (:func:`input_layers`,
and :func:`layer_outputs`, the forward that routes by it), and each backbone row's channels and stride, known
without running it (:func:`feature_info`, :func:`feature_taps`; the maps themselves are
:func:`yolo_mobilevit.tools.features.backbone_features`).

When a plugin config is built, the builder records for every backbone row its index, module, output channels and
reduction (stride relative to the image), and which rows are the P3/P4/P5 taps: the last backbone row at stride
8/16/32 that hands on a plain map, preferring the plugin's stage rows over YOLO blocks a config appends (SPPF,
C2PSA), i.e. the maps a reference backbone's ``features_only`` returns. The record is a plain list of dicts on the
model's layer list (``model.model.yolo_mobilevit_features``), so Ultralytics pickles it into every checkpoint and
reloading restores it; models built by older versions get it computed from their modules the same way.

Channels and strides come from the rows' own arguments (plugin rows) and, for Ultralytics' layers, from their
convolutions: ``Conv``-like layers (a ``conv`` or a final ``cv2``) give their output channels, ``Concat`` adds its
inputs, upsampling divides the stride; any other layer keeps its input's channels and multiplies the stride by the
stride of its one strided convolution or pooling (unknown, None, when it has several: they may run in sequence).
"""

from __future__ import annotations

from typing import Any

from torch import nn

RECORD = "yolo_mobilevit_features"
LEVELS = (3, 4, 5)


def model_and_layers(model: Any) -> tuple[nn.Module, nn.Sequential]:
    """(the Ultralytics ``nn`` model, its layer Sequential) from a ``YOLO`` object or an ``nn`` model."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(inner, nn.Sequential):  # a YOLO / Model wrapper
        model = inner
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential):
        raise TypeError(f"expected an Ultralytics model (YOLO or DetectionModel-like), got {type(model).__name__}")
    return model, layers


def backbone_length(model: Any) -> int:
    """How many of the model's layers are backbone rows (its YAML's ``backbone`` section)."""
    model, layers = model_and_layers(model)
    yaml = getattr(model, "yaml", None)
    return len(yaml["backbone"]) if isinstance(yaml, dict) and "backbone" in yaml else len(layers) - 1


def plugin_rows(model: Any, backbone_only: bool = True) -> list[tuple[int, nn.Module]]:
    """``[(layer index, module), ...]`` of the plugin rows (``YamlModule``), in order."""
    from .modules import YamlModule

    _, layers = model_and_layers(model)
    end = backbone_length(model) if backbone_only else len(layers)
    return [(i, m) for i, m in enumerate(layers[:end]) if isinstance(m, YamlModule)]


def input_layers(f: int | list[int], i: int) -> list[int]:
    """Absolute indices of the layers that layer ``i`` reads through its ``from`` ``f`` (-1: the image; an entry
    reaching before the image stays as written, negative). The one reading of ``from`` in the package."""
    return [j if j < 0 and i + j < 0 else (i + j if j < 0 else j) for j in (f if isinstance(f, list) else [f])]


def layer_outputs(layers: nn.Sequential, images: Any, end: int | None = None) -> list[Any]:
    """The output of each of the first ``end`` layers for ``images`` (B, C, H, W), each layer fed by its ``from``
    as Ultralytics' forward feeds it."""
    outputs: list[Any] = []
    x = images
    for i, m in enumerate(layers[:end]):
        if m.f != -1:
            inputs = [x if j < 0 else outputs[j] for j in input_layers(m.f, i)]
            x = inputs if isinstance(m.f, list) else inputs[0]
        x = m(x)
        outputs.append(x)
    return outputs


# Ultralytics layers that change the resolution without a strided convolution or pooling (space-to-depth, padding)
_UNKNOWN_STRIDE = frozenset({"Focus", "ZeroPad2d"})


def _stock_stride(module: nn.Module) -> float | None:
    """The factor by which an Ultralytics layer divides its input's resolution (a transposed convolution: 1/stride),
    or None when its modules do not tell: space-to-depth or padding, an upsampling to a fixed size, or several
    strided convolutions/poolings, which may run one after the other (HGStem, ResNetLayer, TorchVision) or side by
    side."""
    if isinstance(module, nn.Upsample):
        factor = module.scale_factor
        if factor is None:
            return None
        return 1.0 / float(factor[0] if isinstance(factor, tuple) else factor)
    if type(module).__name__ in _UNKNOWN_STRIDE:
        return None
    factors = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.ConvTranspose2d)):
            s = m.stride
            s = int(s[0] if isinstance(s, tuple) else s)
            if s > 1:
                factors.append(1.0 / s if isinstance(m, nn.ConvTranspose2d) else float(s))
    return factors[0] if len(factors) == 1 else (1.0 if not factors else None)


def _stock_channels(module: nn.Module, inputs: list[int | None]) -> int | None:
    name = type(module).__name__
    if name == "Concat":
        return None if None in inputs else sum(inputs)
    for attr in ("cv2", None):  # a block's final Conv, or the layer's own conv
        conv = getattr(module, attr, None) if attr else module
        conv = getattr(conv, "conv", None)
        if isinstance(conv, nn.Conv2d):
            return conv.out_channels
    return inputs[0]


def layer_maps(layers: nn.Sequential, image_channels: int, end: int | None = None) -> list[dict[str, Any]]:
    """Per layer of a built layer list (the first ``end``): ``channels`` and ``reduction`` (stride relative to the
    image; None where the layer's modules do not tell, and for every layer reading one of those) of the map it hands
    on, and whether it hands on Mobile-Former ``tokens`` beside it. Known without a forward pass."""
    from .modules import YamlModule

    out: list[dict[str, Any]] = []
    for i, m in enumerate(layers[:end]):
        src = input_layers(m.f, i)
        inputs = [{"channels": image_channels, "reduction": 1.0, "tokens": False} if j < 0 else out[j] for j in src]
        in_ch = [x["channels"] for x in inputs]
        in_red = inputs[0]["reduction"]
        if isinstance(m, YamlModule):
            args = getattr(m, "row_args", {})
            c2 = args.get("c2") if not m.passthrough else in_ch[0]
            factor = type(m).stride({k: v for k, v in args.items() if k not in ("c1", "c2", "n")})
            gives_tokens = m.gives_tokens
        else:
            c2, factor, gives_tokens = _stock_channels(m, in_ch), _stock_stride(m), False
        red = None if in_red is None or factor is None else in_red * factor
        out.append({"channels": c2, "reduction": red, "tokens": gives_tokens})
    return out


def describe(model: Any, image_channels: int | None = None) -> dict[str, Any]:
    """Compute the record from the model's modules: ``{"rows": [...], "taps": {"P3": index, ...}}``."""
    from .modules import YamlModule

    model, layers = model_and_layers(model)
    if image_channels is None:
        yaml = getattr(model, "yaml", None)
        image_channels = int(yaml.get("channels", 3)) if isinstance(yaml, dict) else 3
    maps = layer_maps(layers, image_channels, backbone_length(model))
    rows = [
        {
            "index": i,
            "module": type(layers[i]).__name__,
            "channels": m["channels"],
            "reduction": None if m["reduction"] is None else int(m["reduction"]),
        }
        for i, m in enumerate(maps)
    ]
    taps: dict[str, int] = {}
    for row, m in zip(rows, maps):
        if m["tokens"] or row["reduction"] not in (8, 16, 32):
            continue
        level = f"P{row['reduction'].bit_length() - 1}"
        current = taps.get(level)
        plugin = isinstance(layers[row["index"]], YamlModule)
        if current is None or plugin or not isinstance(layers[current], YamlModule):
            taps[level] = row["index"]
    return {"rows": rows, "taps": taps}


def record(layers: nn.Sequential, model_yaml: dict, image_channels: int) -> None:
    """Store the record on a freshly built layer list (called by the builder, before the model wraps it)."""
    holder = nn.Module()
    holder.model, holder.yaml = layers, model_yaml
    setattr(layers, RECORD, describe(holder, image_channels))


def _record(model: Any) -> dict[str, Any]:
    model, layers = model_and_layers(model)
    found = getattr(layers, RECORD, None)
    return found if isinstance(found, dict) else describe(model)


def feature_info(model: Any) -> list[dict[str, Any]]:
    """Per backbone row of ``model`` (a ``YOLO`` object or its ``nn`` model): ``index``, ``module`` (class name),
    ``channels`` (output channels of the plain map; for Mobile-Former rows the map beside the tokens) and
    ``reduction`` (stride relative to the input image). Known without a forward pass.

    Example::

        feature_info(YOLO("yolov8n-mobilevit.yaml"))[5]
        # {'index': 5, 'module': 'MobileViTStage', 'channels': 96, 'reduction': 32}
    """
    return [dict(row) for row in _record(model)["rows"]]


def feature_taps(model: Any) -> dict[str, int]:
    """``{"P3": index, "P4": index, "P5": index}``: the backbone rows whose maps a reference backbone's
    ``features_only`` returns (levels the backbone lacks are absent)."""
    return dict(_record(model)["taps"])


__all__ = [
    "backbone_length",
    "describe",
    "feature_info",
    "feature_taps",
    "input_layers",
    "layer_maps",
    "layer_outputs",
    "plugin_rows",
]
