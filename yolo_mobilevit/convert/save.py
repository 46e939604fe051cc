"""Writing a converted model as an Ultralytics checkpoint."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn


def save_ultralytics_checkpoint(model: nn.Module, output: str | Path, extra: dict[str, Any]) -> Path:
    """Write ``model`` the way ``YOLO.save()`` does (``{"model": module, "ema": None, ...}``) but in fp32, so
    the transferred weights stay bit-identical to the source."""
    from ultralytics import __version__
    from ultralytics.nn.tasks import guess_model_task

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "ema": None,
            "model": model,
            "train_args": {"task": guess_model_task(model.yaml)},  # Ultralytics reads the task from here
            "yolo_mobilevit": extra,
        },
        output,
    )
    return output
