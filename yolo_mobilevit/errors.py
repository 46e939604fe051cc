"""The plugin's errors that need no torch to import, and the command-line hook that prints them without a
traceback."""

from __future__ import annotations

import os
import sys

# console scripts whose uncaught YamlRowError is printed as its message alone
CLI_NAMES = frozenset({"yolo", "ultralytics", "yolo-mobilevit"})
TRACEBACK_ENV = "YOLO_MOBILEVIT_TRACEBACK"


class InputRefused(ValueError):
    """Input a ``yolo-mobilevit`` command refuses (a checkpoint, a model, a setting); the command prints the message,
    naming what is wrong and what was expected, and exits 2."""


class YamlRowError(ValueError):
    """A model YAML row that the plugin cannot build; the message names the file, the layer and section row, the
    row as the user wrote it, and what was expected."""


def row_label(d: dict, i: int) -> str:
    """How an error names layer ``i`` of the model dict ``d``: ``cfg.yaml: layer 7 (head row 2)``."""
    file = d.get("yaml_file") or "<model dict>"
    n_backbone = len(d.get("backbone") or [])
    section, j = ("backbone", i) if i < n_backbone else ("head", i - n_backbone)
    return f"{file}: layer {i} ({section} row {j})"


def _on_cli() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in CLI_NAMES


def install_excepthook() -> None:
    """On the ``yolo`` / ``yolo-mobilevit`` command line, an uncaught :class:`YamlRowError` prints its message
    without the traceback through Ultralytics and the builder (``YOLO_MOBILEVIT_TRACEBACK=1`` keeps it); every other
    exception, and every other program, goes to the hook installed before. Idempotent."""
    previous = sys.excepthook
    if getattr(previous, "yolo_mobilevit", False):
        return

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        quiet = os.environ.get(TRACEBACK_ENV, "").strip().lower() in {"", "0", "false", "no", "off"}
        if issubclass(exc_type, YamlRowError) and quiet and _on_cli():
            print(f"{exc_type.__name__}: {exc}\n(traceback hidden; {TRACEBACK_ENV}=1 shows it)", file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    excepthook.yolo_mobilevit = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
