"""backbone_lr: exactly the backbone's parameter groups are scaled, by exactly the factor, for each optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CFG, dataset_yaml

from yolo_mobilevit import finetune
from yolo_mobilevit.layer_info import plugin_rows


@pytest.mark.parametrize("name", ["SGD", "AdamW", "MuSGD"])
def test_backbone_lr_scales_exactly_the_backbone_groups(name: str, tmp_path: Path, monkeypatch) -> None:
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_mobilevit import integration

    (row,) = [p for p in integration.PATCHES if p.factory.endswith("finetune:make_build_optimizer")]
    assert integration.is_patched(row)  # the start-up hook applied the table's row; nothing is wrapped here
    results = {}
    for factor in (1.0, 0.1):
        overrides = {"model": str(CFG / "yolov8n-mobilevit-xxs.yaml"), "data": str(dataset_yaml("coco8")),
                     "device": "cpu", "project": str(tmp_path), "exist_ok": True, "backbone_lr": factor}  # fmt: skip
        trainer = DetectionTrainer(overrides=overrides)
        trainer.setup_model()
        optimizer = trainer.build_optimizer(trainer.model, name=name, lr=0.01, momentum=0.9, decay=1e-4)
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        backbone = {f"model.{i}.{n}" for i, row in plugin_rows(trainer.model) for n, _ in row.named_parameters()}
        groups = [(g["lr"], {names[id(p)] for p in g["params"]}) for g in optimizer.param_groups]
        results[factor] = groups
        assert sorted(n for _, ids in groups for n in ids) == sorted(names.values())  # every parameter, once
    plain, scaled = results[1.0], results[0.1]
    assert backbone and all(not (ids & backbone) or not (ids - backbone) for _, ids in scaled)  # no mixed group
    lr_of = {key: lr for lr, ids in plain for key in ids}
    for lr, ids in scaled:
        for key in ids:
            assert lr == pytest.approx(lr_of[key] * (0.1 if key in backbone else 1.0), rel=1e-12), key


@pytest.mark.parametrize("bad", [-1, "fast", True])
def test_backbone_lr_validator(bad) -> None:
    with pytest.raises(ValueError, match=r"'backbone_lr=.*' is invalid: expected a number >= 0"):
        finetune.check_backbone_lr(bad)


def _trainer_after_model_train(tmp_path: Path, freeze_layers: int, **overrides):
    """A detection trainer of the MobileNetV3-Large config (BatchNorm throughout), after ``_model_train()``."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    args = {"model": str(CFG / "yolov8n-mobilenetv3-large.yaml"), "data": str(dataset_yaml("coco8")),
            "device": "cpu", "project": str(tmp_path), "exist_ok": True, **overrides}  # fmt: skip
    trainer = DetectionTrainer(overrides=args)
    trainer.setup_model()
    trainer.freeze_layer_names = [f"model.{i}." for i in range(freeze_layers)]  # what _setup_train sets for freeze=N
    trainer._model_train()
    return trainer


@pytest.mark.parametrize(("freeze_bn", "freeze"), [(True, 0), (False, 0), (False, 14)])
def test_freeze_bn_keeps_backbone_statistics(freeze_bn: bool, freeze: int, tmp_path: Path) -> None:
    """freeze_bn=True: every backbone BatchNorm in eval mode (statistics unchanged by a training forward), the neck's
    in train mode; without it only what freeze=N freezes (Ultralytics' own rule, here on plugin rows) stays fixed."""
    import torch

    trainer = _trainer_after_model_train(tmp_path, freeze, freeze_bn=freeze_bn)
    model = trainer.model
    backbone = finetune.backbone_batchnorms(model)
    assert len(backbone) == 45  # MobileNetV3-Large: stem + 15 bottlenecks with 2-3 BatchNorms each (1 + 44)
    neck = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and all(m is not b for b in backbone)]
    assert neck and all(m.training for m in neck)
    fixed = freeze_bn or freeze == 14  # freeze=14 is this config's whole backbone (README table)
    assert all(bn.training is not fixed for bn in backbone)
    before = [bn.running_mean.clone() for bn in backbone]
    model(torch.rand(2, 3, 64, 64))
    changed = [not torch.equal(b, bn.running_mean) for b, bn in zip(before, backbone)]
    assert (not any(changed)) if fixed else all(changed)


def test_freeze_bn_validator() -> None:
    with pytest.raises(ValueError, match=r"'freeze_bn=yes' is invalid: expected True or False"):
        finetune.check_args({"freeze_bn": "yes"})
    finetune.check_args({"freeze_bn": True, "backbone_lr": 0.1})
