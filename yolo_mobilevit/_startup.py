"""Start-up activation. ``yolo_mobilevit_autoload.pth`` imports the package in every interpreter (unless
``YOLO_MOBILEVIT_AUTOLOAD=0``), so this imports nothing heavy. It installs an import hook that calls :func:`yolo_mobilevit.integration.register` right after
``ultralytics.nn.tasks`` (Ultralytics' model builder) finishes importing."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

TARGET = "ultralytics.nn.tasks"
CFG_TARGET = "ultralytics.cfg"  # the `yolo` CLI checks `key=value` arguments after importing this, before TARGET
ENV_SWITCH = "YOLO_MOBILEVIT_AUTOLOAD"


def autoload_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def _on_tasks_imported(module: ModuleType) -> None:
    from .integration import register

    register()


def _on_cfg_imported(module: ModuleType) -> None:
    from .multiscale import register_config

    register_config()


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates to the real loader, then registers the plugin."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        (_on_cfg_imported if module.__name__ == CFG_TARGET else _on_tasks_imported)(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class TasksImportHook(importlib.abc.MetaPathFinder):
    """Meta-path finder that wraps the loaders of ``ultralytics.nn.tasks`` and ``ultralytics.cfg`` only."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname not in (TARGET, CFG_TARGET):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _RegisteringLoader):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install_hook() -> None:
    """Register now if Ultralytics' builder is already imported, else when it is. Idempotent."""
    if CFG_TARGET in sys.modules:
        _on_cfg_imported(sys.modules[CFG_TARGET])
    if TARGET in sys.modules:
        _on_tasks_imported(sys.modules[TARGET])
    elif not any(isinstance(f, TasksImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, TasksImportHook())
