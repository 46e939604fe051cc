"""Heads of the Ultralytics tasks newer than the oldest supported release, and the first release that has each.

Ultralytics 8.4.0 has detect, segment, classify, pose and obb; ``semantic`` (``SemanticSegment``) and ``depth``
(``Depth``) came later within 8.4.x. A config with such a head on an older Ultralytics would otherwise fail with a
bare ``KeyError`` inside ``parse_model`` (or be mistaken for another task); :func:`require_task_heads` refuses it
first, naming the task, the installed version and the first release with the task.

First releases, read from the registry's wheels (``ultralytics/cfg/__init__.py`` ``TASKS`` and the head class in
``ultralytics/nn/modules/head.py``, bisected over 8.4.0 ... 8.4.190): semantic 8.4.52 (absent in 8.4.51), depth
8.4.104 (absent in 8.4.103).
"""

from __future__ import annotations

from typing import Any

from .errors import YamlRowError, row_label

#: head module name -> (task, first Ultralytics release that has it)
FIRST_RELEASE: dict[str, tuple[str, str]] = {
    "SemanticSegment": ("semantic", "8.4.52"),
    "Depth": ("depth", "8.4.104"),
}


def require_task_heads(d: dict, tasks: Any) -> None:
    """Raise ``YamlRowError`` if the model dict ``d`` uses a task head that the installed ``ultralytics.nn.tasks``
    (module ``tasks``) lacks."""
    from .versions import ULTRALYTICS_REQUIREMENT

    rows = (d.get("backbone") or []) + (d.get("head") or [])
    for i, row in enumerate(rows):
        name = row[2] if isinstance(row, list) and len(row) == 4 else None
        if isinstance(name, str) and name in FIRST_RELEASE and name not in vars(tasks):
            import ultralytics

            task, first = FIRST_RELEASE[name]
            raise YamlRowError(
                f"{row_label(d, i)} {row!r}: the {name} head is Ultralytics' task={task}, which ultralytics "
                f"{ultralytics.__version__} (installed) does not have; it first shipped in ultralytics {first}. "
                f"pip install 'ultralytics>={first},{ULTRALYTICS_REQUIREMENT.split(',')[-1]}'"
            )


def make_yaml_model_load(original: Any) -> Any:
    """Wrap ``yaml_model_load(path)`` so a config with a newer task's head is refused as it is read, before
    Ultralytics guesses its task (8.4.0 guesses none for ``Depth`` and fails with a message about the task map)."""
    import sys

    def yaml_model_load(path: Any) -> dict:
        d = original(path)
        require_task_heads(d, sys.modules["ultralytics.nn.tasks"])
        return d

    return yaml_model_load


def make_calibrate_checkpoint(original: Any) -> Any:
    """Wrap the depth trainer's ``calibrate_checkpoint(ckpt_path, ...)``, which after training writes the fitted
    output calibration (``Depth.cal_a`` / ``cal_b``) into best.pt and last.pt and re-saves them: the weights digest
    the plugin recorded when the trainer saved the file would no longer match. The file is verified as the trainer
    wrote it, calibrated by Ultralytics, then given the digest of its calibrated weights."""

    def calibrate_checkpoint(ckpt_path: Any, *args: Any, **kwargs: Any) -> Any:
        import torch
        from torch import nn
        from ultralytics.utils.patches import torch_load

        from .checkpoints import DIGEST_KEY, verify_digest, weights_digest

        verify_digest(torch_load(ckpt_path, map_location="cpu"), ckpt_path)  # raises if changed since saving
        result = original(ckpt_path, *args, **kwargs)
        ckpt = torch_load(ckpt_path, map_location="cpu")
        stamped = False
        for key in ("ema", "model"):
            model = ckpt.get(key) if isinstance(ckpt, dict) else None
            layers = getattr(model, "model", None)
            if isinstance(layers, nn.Module) and hasattr(layers, DIGEST_KEY):
                setattr(layers, DIGEST_KEY, weights_digest(model))
                stamped = True
        if stamped:
            torch.save(ckpt, ckpt_path)
        return result

    return calibrate_checkpoint
