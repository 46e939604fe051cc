"""Weight conversion from reference implementations (timm, ml-cvnets, torchvision) to plugin checkpoints.

``convert_checkpoint(source, cfg, output)`` builds the plugin config ``cfg`` as an Ultralytics model, maps the
source's backbone tensors onto it and writes an Ultralytics checkpoint (``{"model": DetectionModel, ...}``, fp32),
so that ``yolo train model=<cfg> pretrained=<output>`` transfers the backbone by name. The command line is
``yolo-mobilevit convert SOURCE --cfg CFG -o OUTPUT``.

Adding a family (the contract)
------------------------------
A converter module per family (or per group of families: ``mobilenet.py`` serves V1, V2 and V3), named by the
family's spec (``converter=`` and ``formats=`` of :class:`yolo_mobilevit.families.FamilySpec`; a named module that
is not installed is skipped). At import it calls :func:`register_format` once per source format::

    register_format(SourceFormat(
        name="torchvision-mobilenet_v2",          # unique; what --format accepts
        description="torchvision mobilenet_v2 state_dict",
        detect=lambda sd: "features.18.0.weight" in sd,   # (source state_dict) -> bool; cheap key/shape test
        map_state_dict=map_mobilenet_v2,          # (source state_dict, model) -> {target_key: tensor}
        load_name=None,                           # optional (name) -> state_dict | None, for hub/model names
        ignored=("classifier.",),                 # source key prefixes that never map (heads, final convs)
    ))

``map_state_dict(source, model)``
    ``source`` is the flat source state_dict (``str -> Tensor``; wrappers such as ``{"state_dict": ...}``, the
    ``module.`` prefix and timm's ``features_only`` names ``stages_0`` -> ``stages.0`` are already removed).
    ``model`` is the built Ultralytics ``nn`` model (e.g. ``DetectionModel``); :func:`weighted_rows` lists its plugin
    backbone rows ``(index, module)`` in order, and :func:`map_by_name` does the usual walk given a function
    ``(row position, row module, local key) -> source key``. Return ``{target_key: source_tensor}`` with target keys of
    ``model.state_dict()`` (``"model.3.blocks.0.conv_in.weight"``). Return tensors unchanged (no copies, no
    reshapes unless a layout truly differs; a tensor that must be computed is returned as
    ``Derived(tensor, (source keys,))``), and do not check shapes: the caller compares every returned tensor
    with the model, refuses mismatches naming tensor and both shapes, and reports which source tensors were unused
    and which backbone tensors stayed unloaded. Raise :class:`ConversionError` when the config's structure cannot
    take the source at all (e.g. a MobileViT checkpoint into a MobileNet config), saying what was expected.
``detect(source)``
    True when the state_dict is in this format; used when ``--format`` is not given. Formats must not overlap.
``ignored``
    Prefixes of source keys that are not backbone (classifier heads, a final 1x1 conv the configs drop): left
    unused without complaint. Any other unused source tensor makes a strict conversion fail, so that a config with
    fewer layers than the checkpoint is refused rather than silently truncated.
``head``
    Optional :class:`HeadSource`: where the checkpoint keeps its ImageNet classifier (final 1x1 conv + BN, hidden
    Linear, last Linear). When the target config ends in a ``Classifier`` row (the ``-cls`` configs), those tensors
    are mapped onto it too, so the converted model classifies as the reference does.
``load_name(name)``
    Optional: resolve a non-file source (e.g. a timm model name) to a state_dict, importing heavy libraries lazily
    and only needing the network when the name is not cached. Return None when the name is not this format's.
"""

from __future__ import annotations

from .core import convert_checkpoint, load_converted, map_weights
from .registry import (
    FORMATS,
    ConversionError,
    Derived,
    HeadSource,
    SourceFormat,
    StateDict,
    formats,
    map_by_name,
    register_format,
    rescale_bn_weight,
    weighted_rows,
)
from .report import ConversionReport
from .source import load_source

__all__ = [
    "FORMATS",
    "ConversionError",
    "ConversionReport",
    "Derived",
    "HeadSource",
    "SourceFormat",
    "StateDict",
    "convert_checkpoint",
    "formats",
    "load_converted",
    "load_source",
    "map_by_name",
    "map_weights",
    "register_format",
    "rescale_bn_weight",
    "weighted_rows",
]
