"""yolo-mobilevit: MobileViT, MobileNet and Mobile-Former backbones for an unmodified Ultralytics.

``import yolo_mobilevit`` activates the plugin (lazily: nothing heavy is imported until Ultralytics' model builder
is). ``yolo_mobilevit.register()`` activates it eagerly. The installed ``.pth`` file does the same in every
interpreter unless ``YOLO_MOBILEVIT_AUTOLOAD=0``.

Public API: :func:`register`, :func:`feature_info` and :func:`feature_taps` (what each backbone row emits),
:func:`backbone_features` (the maps themselves), ``__version__``.
"""

from __future__ import annotations

from ._startup import install_hook
from .versions import __version__

_LAZY = {  # name -> module that defines it; imported on first access so that start-up stays free of torch
    "feature_info": "yolo_mobilevit.layer_info",
    "feature_taps": "yolo_mobilevit.layer_info",
    "backbone_features": "yolo_mobilevit.tools.features",
}


def register() -> None:
    """Patch Ultralytics now (imports torch and ultralytics) instead of when its model builder is imported."""
    from .integration import register as _register

    _register()


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in {"modules", "integration"}:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


install_hook()

__all__ = ["__version__", "backbone_features", "feature_info", "feature_taps", "install_hook", "register"]
