"""Fine-tuning controls: ``backbone_lr``, the learning rate of the plugin's backbone rows as a factor of every other
parameter's, for any optimizer Ultralytics builds (SGD, AdamW, MuSGD, ...); ``freeze_bn``, the running statistics of
every BatchNorm in the backbone rows kept as loaded.

:func:`make_build_optimizer` wraps ``BaseTrainer.build_optimizer``: each parameter group Ultralytics makes (decayed
weights, norm weights, biases, Muon weights, ...) is split into its non-backbone part (kept in place, so Ultralytics'
group order and its warm-up of group 0 are unchanged) and its backbone part, appended as a group with the same
options and ``lr * backbone_lr``. The scheduler and warm-up scale each group's own ``initial_lr``, so the factor holds
for the whole run; the split is a function of the model and the key only, so ``resume`` and DDP ranks rebuild the
same groups that the saved optimizer state expects.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .integration import BACKBONE_LR, FREEZE_BN, TRAINING_KEYS

KEY = BACKBONE_LR
DEFAULT = TRAINING_KEYS[BACKBONE_LR][0]  # 1.0: off


def check_backbone_lr(value: Any) -> None:
    """Validator: ``backbone_lr`` must be a number >= 0 (0 freezes the backbone's updates; 1 is off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(
            f"'{KEY}={value}' is invalid: expected a number >= 0 (the backbone's learning-rate factor, 1.0 = off)"
        )


def backbone_parameter_ids(model: Any) -> set[int]:
    """ids of the parameters of the plugin's backbone rows of ``model`` (DDP/EMA wrappers unwrapped)."""
    from .layer_info import plugin_rows

    model = getattr(model, "module", model)
    return {id(p) for _, row in plugin_rows(model) for p in row.parameters()}


def split_backbone_groups(optimizer: Any, model: Any, factor: float) -> None:
    """Move the backbone's parameters of every group into a new group with ``lr * factor`` (in place)."""
    backbone = backbone_parameter_ids(model)
    extra = []
    for group in optimizer.param_groups:
        inside = [p for p in group["params"] if id(p) in backbone]
        if not inside:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in backbone]
        extra.append(
            {**{k: v for k, v in group.items() if k != "params"}, "params": inside, "lr": group["lr"] * factor}
        )
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for group in extra:
        optimizer.add_param_group(group)


def make_build_optimizer(original: Any) -> Any:
    """Wrap ``BaseTrainer.build_optimizer(model, ...)`` with :func:`split_backbone_groups` when ``backbone_lr != 1``."""

    def build_optimizer(self: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        optimizer = original(self, model, *args, **kwargs)
        factor = float(getattr(self.args, KEY, DEFAULT))
        if factor != DEFAULT:
            split_backbone_groups(optimizer, model, factor)
        return optimizer

    return build_optimizer


def backbone_batchnorms(model: Any) -> list[nn.Module]:
    """Every BatchNorm (``nn.modules.batchnorm._BatchNorm``: 1-D, 2-D, 3-D) in the plugin's backbone rows of
    ``model``: what pretrained weights fill; not the SPPF / C2PSA a config appends."""
    from .layer_info import plugin_rows

    rows = plugin_rows(getattr(model, "module", model))
    return [m for _, row in rows for m in row.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def make_model_train(original: Any) -> Any:
    """Wrap ``BaseTrainer._model_train()`` so that ``freeze_bn=True`` keeps the backbone's BatchNorms in eval mode."""

    def _model_train(self: Any) -> Any:
        out = original(self)
        if getattr(self.args, FREEZE_BN, False):
            for bn in backbone_batchnorms(self.model):
                bn.eval()
        return out

    return _model_train


def check_args(cfg: dict) -> None:
    """The integration's validator form (the whole config dict): checks ``backbone_lr`` and ``freeze_bn`` when set."""
    if cfg.get(KEY) is not None:
        check_backbone_lr(cfg[KEY])
    if cfg.get(FREEZE_BN) is not None and not isinstance(cfg[FREEZE_BN], bool):
        raise ValueError(
            f"'{FREEZE_BN}={cfg[FREEZE_BN]}' is invalid: expected True or False (keep the backbone's BatchNorm "
            "statistics as loaded)"
        )


__all__ = [
    "DEFAULT",
    "FREEZE_BN",
    "KEY",
    "backbone_batchnorms",
    "check_backbone_lr",
    "make_build_optimizer",
    "make_model_train",
    "split_backbone_groups",
]
