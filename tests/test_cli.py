"""End to end through the plain `yolo` CLI and fresh interpreters: the plugin is never imported explicitly."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, dataset_yaml, run, train_args, yolo

PY = sys.executable
COCO8_VAL_IMAGES = dataset_yaml("coco8").parent / "images" / "val"


def python(code: str, cwd: Path, env: dict[str, str] | None = None):
    return run([PY, "-c", textwrap.dedent(code)], cwd=cwd, env=env)


@pytest.mark.slow
def test_train_from_plain_cli(trained_run: Path):
    assert (trained_run / "weights" / "best.pt").is_file()
    assert (trained_run / "weights" / "last.pt").is_file()
    assert (trained_run / "results.csv").is_file()


@pytest.mark.slow
def test_val_and_predict_in_fresh_processes(trained_run: Path, tmp_path: Path):
    best = trained_run / "weights" / "best.pt"
    out = yolo(
        "val",
        f"model={best}",
        f"data={dataset_yaml('coco8')}",
        "imgsz=64",
        "batch=4",
        "device=cpu",
        f"project={tmp_path}",
        "name=val",
        cwd=tmp_path,
    )
    assert "mAP50-95" in out.stdout + out.stderr
    yolo(
        "predict",
        f"model={best}",
        f"source={COCO8_VAL_IMAGES}",
        "imgsz=96,160",
        "device=cpu",
        "save_txt=True",
        "conf=0.0",
        f"project={tmp_path}",
        "name=predict",
        cwd=tmp_path,
    )
    saved = sorted((tmp_path / "predict").glob("*.jpg"))
    assert len(saved) == len(list(COCO8_VAL_IMAGES.glob("*.jpg")))


@pytest.mark.slow
def test_checkpoint_reloads_and_finetunes_in_new_process(trained_run: Path, tmp_path: Path):
    """Model.train() on a loaded checkpoint rebuilds the model from the YAML stored in it."""
    best = trained_run / "weights" / "best.pt"
    out = python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(best)!r})
        print("layer3", type(model.model.model[3]).__name__)
        model.train(data={str(dataset_yaml("coco8"))!r}, epochs=1, imgsz=64, batch=4, workers=0, device="cpu",
                    project={str(tmp_path)!r}, name="ft", exist_ok=True, plots=False, val=False)
        """,
        cwd=tmp_path,
    )
    assert "layer3 MobileViTStage" in out.stdout
    assert (tmp_path / "ft" / "weights" / "last.pt").is_file()


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
    assert (tmp_path / "ms" / "weights" / "best.pt").is_file()


def requires_restricted_loading() -> None:
    from ultralytics.nn import tasks

    if not hasattr(tasks, "_SafeLoad"):
        pytest.skip(f"ultralytics {ultralytics.__version__} has no restricted loading (ULTRALYTICS_SAFE_LOAD)")


@pytest.mark.slow
def test_safe_load_of_plugin_checkpoint(trained_run: Path, tmp_path: Path):
    requires_restricted_loading()
    best = trained_run / "weights" / "best.pt"
    out = python(
        f"""
        from ultralytics import YOLO
        from ultralytics.nn.tasks import _SafeLoad
        assert _SafeLoad.restricted() or not _SafeLoad.SUPPORTED
        model = YOLO({str(best)!r})
        results = model.predict({str(COCO8_VAL_IMAGES)!r}, imgsz=64, device="cpu", verbose=False)
        print("loaded", type(model.model.model[3]).__name__, len(results))
        """,
        cwd=tmp_path,
        env={"ULTRALYTICS_SAFE_LOAD": "1"},
    )
    assert "loaded MobileViTStage 4" in out.stdout


@pytest.mark.slow
def test_restricted_load_needs_the_plugin(trained_run: Path, tmp_path: Path):
    """Ultralytics' restricted loader admits the plugin's classes only because the plugin allow-lists them."""
    requires_restricted_loading()
    best = trained_run / "weights" / "best.pt"
    code = f"""
        from ultralytics.nn.tasks import torch_safe_load
        try:
            torch_safe_load({str(best)!r}, safe_only=True)
            print("LOADED")
        except Exception as e:
            print("REFUSED", type(e).__name__)
        """
    assert "REFUSED TypeError" in python(code, cwd=tmp_path, env={"YOLO_MOBILEVIT_AUTOLOAD": "0"}).stdout
    assert "LOADED" in python(code, cwd=tmp_path).stdout


def test_startup_hook_is_lazy_and_can_be_switched_off(tmp_path: Path):
    probe = "import sys; print(sorted(m for m in ('torch', 'ultralytics', 'yolo_mobilevit') if m in sys.modules))"
    assert python(probe, cwd=tmp_path).stdout.strip() == "['yolo_mobilevit']"
    assert python(probe, cwd=tmp_path, env={"YOLO_MOBILEVIT_AUTOLOAD": "0"}).stdout.strip() == "[]"


def test_explicit_import_when_autoload_is_off(tmp_path: Path):
    cfg = str(CFG / "yolov8n-mobilevit.yaml")
    off = {"YOLO_MOBILEVIT_AUTOLOAD": "0"}
    out = python(
        f"""
        from ultralytics import YOLO
        try:
            YOLO({cfg!r})
        except KeyError as e:
            print("unknown without plugin:", e)
        """,
        cwd=tmp_path,
        env=off,
    )
    assert "unknown without plugin: 'ConvBNAct'" in out.stdout
    for activate in ("import yolo_mobilevit", "import yolo_mobilevit; yolo_mobilevit.register()"):
        out = python(
            f"{activate}\nfrom ultralytics import YOLO\nprint(YOLO({cfg!r}).model.model[3].type)", cwd=tmp_path, env=off
        )
        assert "MobileViTStage" in out.stdout


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
    assert (tmp_path / "train" / "weights" / "best.pt").is_file()


def test_unsupported_ultralytics_keeps_stock_working(tmp_path: Path):
    """Outside the supported range: one warning, stock models build, plugin rows fail naming both versions."""
    plugin_yaml = CFG / "yolov8-mobilenetv3-large.yaml"
    proc = run(
        [
            PY,
            "-W",
            "always",
            "-c",
            (
                "import ultralytics; ultralytics.__version__ = '8.3.100'\n"
                "from ultralytics import YOLO\n"
                "print('stock layers', len(YOLO('yolov8n.yaml').model.model))\n"
                "YOLO('yolo11n.yaml')\n"
                "try:\n"
                f"    YOLO({str(plugin_yaml)!r})\n"
                "except Exception as e:\n"
                "    print('ERROR', type(e).__name__, e)"
            ),
        ],
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert "stock layers 23" in proc.stdout, out
    assert out.count("yolo-mobilevit supports ultralytics") == 1, out  # warned once, for two stock builds
    assert "ERROR YamlRowError" in proc.stdout, out
    assert "yolov8-mobilenetv3-large.yaml uses plugin rows" in proc.stdout
    assert "supports ultralytics 8.4.0 to 8.4.190 and 8.3.100 is installed" in proc.stdout


@pytest.mark.slow
def test_ddp_worker_script_runs_in_fresh_interpreter(tmp_path: Path):
    """Ultralytics' own DDP launcher script (as each worker runs it, in a new interpreter) trains a plugin model.

    Multi-GPU itself needs GPUs; what can break for a plugin is the worker rebuilding or unpickling the model in a
    fresh process, and that is exactly what this script does (8.4.190 unpickles the model; 8.4.0 rebuilds it)."""
    out = python(
        f"""
        from ultralytics.models.yolo.detect import DetectionTrainer
        from ultralytics.utils.dist import generate_ddp_file
        trainer = DetectionTrainer(overrides=dict(
            model={str(CFG / "yolov8n-mobilevit.yaml")!r}, data={str(dataset_yaml("coco8"))!r}, epochs=1, imgsz=64,
            batch=4, workers=0, device="cpu", project={str(tmp_path)!r}, name="ddp", exist_ok=True, plots=False))
        trainer.model = trainer.get_model(cfg={str(CFG / "yolov8n-mobilevit.yaml")!r}, verbose=False)
        print("DDPFILE", generate_ddp_file(trainer))
        """,
        cwd=tmp_path,
    )
    script = next(line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("DDPFILE "))
    run([PY, script], cwd=tmp_path)
    assert (tmp_path / "ddp" / "weights" / "last.pt").is_file()
