"""The plugin's network settings, shared by the weights store (:mod:`yolo_mobilevit.pretrained`) and conversion by
model name (:mod:`yolo_mobilevit.convert`): Ultralytics' ``YOLO_OFFLINE`` switch and the timeout of one connection."""

from __future__ import annotations

import os

HTTP_TIMEOUT = 10.0  # seconds per connection attempt; a dead network fails fast instead of hanging training


def offline() -> bool:
    """Whether ``YOLO_OFFLINE`` (Ultralytics' switch) turns downloads off."""
    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes")
