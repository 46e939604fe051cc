"""yolo-mobilevit: MobileViT, MobileNet and Mobile-Former backbones for an unmodified Ultralytics.

``import yolo_mobilevit`` activates the plugin (lazily: nothing heavy is imported until Ultralytics' model builder
is). ``yolo_mobilevit.register()`` activates it eagerly. The installed ``.pth`` file does the same in every
interpreter unless ``YOLO_MOBILEVIT_AUTOLOAD=0``.
"""

from __future__ import annotations

from typing import Any

from ._startup import install_hook
from .versions import __version__


def register() -> None:
    """Register the plugin's YAML modules with Ultralytics now (imports torch and ultralytics)."""
    from .integration import register as _register

    _register()


def __getattr__(name: str) -> Any:  # lazy access keeps `import yolo_mobilevit` free of torch
    if name in {"modules", "integration"}:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


install_hook()

__all__ = ["__version__", "install_hook", "register"]
