"""backbone_lr: exactly the backbone's parameter groups are scaled, by exactly the factor, for each optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CFG, dataset_yaml

from yolo_mobilevit import finetune
from yolo_mobilevit.featuremap import plugin_rows


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
