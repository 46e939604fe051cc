"""Start-up activation. ``yolo_mobilevit_autoload.pth`` imports the package in every interpreter (unless
``YOLO_MOBILEVIT_AUTOLOAD=0``), so this module imports nothing heavy (no torch, no typing): it installs a meta-path
finder that, right after each Ultralytics module named in :data:`yolo_mobilevit.integration.WATCHED` finishes
importing, calls :func:`yolo_mobilevit.integration.on_import` for it."""

from __future__ import annotations

import os
import sys

from . import integration
from .errors import install_excepthook

ENV_SWITCH = "YOLO_MOBILEVIT_AUTOLOAD"


def autoload_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


class _PatchingLoader:
    """Delegates to the real loader, then applies the plugin's patches to the module it executed."""

    def __init__(self, loader: object) -> None:
        self.loader = loader

    def create_module(self, spec: object) -> object:
        return self.loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        self.loader.exec_module(module)
        integration.on_import(module.__name__)

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)


class PatchOnImport:
    """Meta-path finder that wraps the loaders of the watched Ultralytics modules only."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname not in integration.WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _PatchingLoader):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install_hook() -> None:
    """Patch the watched modules already imported, and the others when they are; install the command line's
    :class:`~yolo_mobilevit.errors.YamlRowError` hook. Idempotent."""
    for name in sorted(integration.WATCHED):
        if name in sys.modules:
            integration.on_import(name)
    if not any(isinstance(f, PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, PatchOnImport())
    install_excepthook()
