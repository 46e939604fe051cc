"""``yolo`` with the pretrained-weights patches applied on top of the plugin's own (what the integration table will
apply once it lists these rows). Usage: ``python tests/pretrained_cli.py train model=... ...``."""

from __future__ import annotations

import sys

import ultralytics.engine.trainer
import ultralytics.nn.tasks  # noqa: F401  (imported so the start-up hook patches them first)

from yolo_mobilevit.integration import Patch, apply

ROWS = (
    Patch("ultralytics.nn.tasks", "BaseModel.load", "yolo_mobilevit.pretrained:make_load",
          "convert reference (timm, torchvision, cvnets, Mobile-Former) weights given to pretrained= or .load()"),
    Patch("ultralytics.nn.tasks", "torch_safe_load", "yolo_mobilevit.pretrained:make_torch_safe_load",
          "read reference checkpoints (bare/wrapped state dicts, .pth/.bin/.safetensors) instead of refusing them"),
    Patch("ultralytics.engine.trainer", "BaseTrainer.setup_model", "yolo_mobilevit.pretrained:make_setup_model",
          "pretrained=True on a plugin YAML: fetch, cache and load the weights its backbone_weights key names"),
)  # fmt: skip

if __name__ == "__main__":
    for row in ROWS:
        apply(row)
    from ultralytics.cfg import entrypoint

    sys.exit(entrypoint())
