"""Training from scratch through fresh interpreters, as users and Ultralytics' own launchers run it: resume after an
interruption, multi-scale training with rect validation, a user-written YAML with P2/P6 heads (the DDP
worker path: test_ddp.py). (Apart from test_cli.py so that the two halves run on different workers.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, dataset_yaml, python, train_args, yolo
from helpers import assert_trained


@pytest.mark.slow
def test_resume_after_interruption(tmp_path: Path):
    python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(CFG / "yolov8n-mobilevit.yaml")!r})
        def interrupt(trainer):
            raise KeyboardInterrupt("simulated interruption after epoch 1")
        model.add_callback("on_fit_epoch_end", interrupt)
        try:
            model.train(data={str(dataset_yaml("coco8"))!r}, epochs=2, imgsz=64, batch=4, workers=0, device="cpu",
                        project={str(tmp_path)!r}, name="run", exist_ok=True, plots=False, val=False)
        except KeyboardInterrupt:
            print("interrupted")
        """,
        cwd=tmp_path,
    )
    last = tmp_path / "run" / "weights" / "last.pt"
    out = yolo("train", "resume", f"model={last}", cwd=tmp_path)
    log = out.stdout + out.stderr
    assert "Resuming training" in log and "from epoch 2 to 2 total epochs" in log
    assert "2/2" in log


@pytest.mark.slow
def test_multi_scale_training_and_rect_validation(tmp_path: Path):
    """Ultralytics' own multi_scale (random batch sizes, odd P5 maps included) trains; validation always uses rect
    (letterboxed, non-square) batches. The input sizes the stem saw are recorded by a forward pre-hook."""
    out = python(
        f"""
        from ultralytics import YOLO
        seen = {{"train": set(), "val": set()}}
        def record(module, args):
            seen["train" if module.training else "val"].add(tuple(args[0].shape[-2:]))
        def hook(trainer):  # the trained model, and its EMA copy that validates each epoch
            for model in (trainer.model, trainer.ema.ema):
                model.model[0].register_forward_pre_hook(record)
        model = YOLO({str(CFG / "yolov8n-mobilevit.yaml")!r})
        model.add_callback("on_train_start", hook)
        model.train(data={str(dataset_yaml("coco8"))!r}, epochs=3, imgsz=64, batch=2, workers=0, device="cpu",
                    multi_scale=1.0, project={str(tmp_path)!r}, name="ms", exist_ok=True, plots=False)
        print("TRAIN", sorted(seen["train"]))
        print("VAL", sorted(seen["val"]))
        """,
        cwd=tmp_path,
    )
    train = ast.literal_eval(out.stdout.split("TRAIN ")[1].splitlines()[0])
    val = ast.literal_eval(out.stdout.split("VAL ")[1].splitlines()[0])
    assert len(train) >= 2 and any(h // 32 % 2 for h, _ in train), train  # several sizes, an odd P5 among them
    assert val, "validation did not run"
    if ultralytics.__version__ != "8.4.0":  # 8.4.0 also rescales validation batches to square multi-scale sizes
        assert any(h != w for h, w in val), val  # rect validation batches
    assert_trained(tmp_path / "ms", epochs=3)


CUSTOM_YAML = """
# Written by a user: other channels and repeats, a P2 output, a P6 stage, and a plain FPN-ish neck.
nc: 3
backbone:
  - [-1, 1, ConvBNAct, [24, 3, 2]] # 0 P1/2
  - [-1, 2, MV2Stage, [32, 2, 3]] # 1 P2/4, two blocks
  - [-1, 2, MobileViTStage, [48, 64, 1, 2, 2]] # 2 P3/8, two MobileViT blocks, 2 heads
  - [-1, 1, MobileViTStage, [72, 96, 2, 3]] # 3 P4/16
  - [-1, 1, MobileViTStage, [96, 128, 1]] # 4 P5/32
  - [-1, 1, MobileViTStage, [128, 128, 1]] # 5 P6/64
head:
  - [1, 1, Conv, [32, 1, 1]] # 6 P2 out
  - [2, 1, Conv, [32, 1, 1]] # 7 P3 out
  - [4, 1, nn.Upsample, [None, 2, "nearest"]] # 8
  - [[-1, 3], 1, Concat, [1]] # 9
  - [-1, 1, C2f, [64]] # 10 P4 out
  - [5, 1, Conv, [64, 1, 1]] # 11 P6 out
  - [[6, 7, 10, 11], 1, Detect, [nc]]
"""


@pytest.mark.slow
def test_user_written_yaml_with_p2_and_p6_trains(tmp_path: Path):
    cfg = tmp_path / "my-mobilevit-p2p6.yaml"
    cfg.write_text(CUSTOM_YAML)
    out = python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(cfg)!r})
        print("strides", model.model.stride.tolist())
        print("c", [model.model.model[i].row_args["c1"] for i in (1, 2, 3, 4, 5)])
        """,
        cwd=tmp_path,
    )
    assert "strides [4.0, 8.0, 16.0, 64.0]" in out.stdout
    assert "c [24, 32, 48, 72, 96]" in out.stdout
    yolo(*train_args(cfg, tmp_path, imgsz=128), cwd=tmp_path)
    assert_trained(tmp_path / "train", epochs=1)
