"""This plugin's version (the one source: pyproject reads it) and the Ultralytics version policy (docs/versions.md).

pyproject.toml admits every Ultralytics of the ``8.4`` series from :data:`ULTRALYTICS_MIN` (``>=8.4.0,<8.5``); CI tests
both ends of :data:`ULTRALYTICS_MIN` .. :data:`ULTRALYTICS_TESTED`. A newer ``8.4.x`` is *untested*: the plugin checks
each patched target before patching it (:func:`yolo_mobilevit.integration.self_test`). Anything else is
*outside* the policy: the plugin stands aside.
"""

from __future__ import annotations

__version__ = "0.1.0"

ULTRALYTICS_MIN = "8.4.0"  # the oldest release CI tests (and pyproject's lower bound)
ULTRALYTICS_TESTED = "8.4.190"  # the newest release CI tests
ULTRALYTICS_REQUIREMENT = "ultralytics>=8.4.0,<8.5"  # pyproject.toml's line; tests/test_versions.py keeps them equal

TESTED, UNTESTED, OUTSIDE = "tested", "untested", "outside"


def parse_version(version: str) -> tuple[int, ...]:
    """``"8.4.190"`` -> ``(8, 4, 190)``; non-digits in a part are dropped (``"1.0.0rc1"`` -> ``(1, 0, 1)``)."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def policy(version: str) -> str:
    """:data:`TESTED` (in the range CI tests), :data:`UNTESTED` (a newer release of the same minor series) or
    :data:`OUTSIDE` (older, or another minor or major release)."""
    low, high, found = parse_version(ULTRALYTICS_MIN), parse_version(ULTRALYTICS_TESTED), parse_version(version)
    if low <= found <= high:
        return TESTED
    return UNTESTED if found > high and found[:2] == high[:2] else OUTSIDE


def describe() -> str:
    """The policy in a phrase, for messages."""
    series = ".".join(ULTRALYTICS_TESTED.split(".")[:2])
    return f"ultralytics {ULTRALYTICS_MIN} and newer {series} releases (tested to {ULTRALYTICS_TESTED})"
