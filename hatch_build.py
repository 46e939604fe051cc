"""Build hook: an editable install gets the start-up file but not the force-included copy of ``cfg/`` (the package
finds the checkout's ``cfg/`` itself, so edits there take effect as in any editable install)."""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class EditableWithoutConfigCopy(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            build_data["force_include_editable"] = {"yolo_mobilevit_autoload.pth": "yolo_mobilevit_autoload.pth"}
