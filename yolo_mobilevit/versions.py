"""This plugin's version (the one source: pyproject reads it) and the Ultralytics versions it is tested against
(kept in step with pyproject.toml's dependency range)."""

from __future__ import annotations

__version__ = "0.1.0"

ULTRALYTICS_MIN = "8.4.0"
ULTRALYTICS_MAX = "8.4.190"


def parse_version(version: str) -> tuple[int, ...]:
    """``"8.4.190"`` -> ``(8, 4, 190)``; non-digits in a part are dropped (``"1.0.0rc1"`` -> ``(1, 0, 1)``)."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def is_supported(version: str) -> bool:
    return parse_version(ULTRALYTICS_MIN) <= parse_version(version) <= parse_version(ULTRALYTICS_MAX)
