"""End to end through the plain `yolo` CLI and fresh interpreters: the plugin is never imported explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, PY, dataset_yaml, python, run, yolo
from helpers import assert_predictions, assert_trained

COCO8_VAL_IMAGES = dataset_yaml("coco8").parent / "images" / "val"


@pytest.mark.slow
def test_train_from_plain_cli(trained_run: Path):
    columns = assert_trained(trained_run, epochs=1)
    assert {"metrics/mAP50(B)", "metrics/mAP50-95(B)"} <= set(columns), sorted(columns)


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
    assert_predictions(tmp_path / "predict" / "labels", COCO8_VAL_IMAGES)  # conf=0.0: boxes for every image


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
    assert (tmp_path / "ft" / "weights" / "last.pt").is_file()  # val=False: no results.csv losses to read


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
    assert out.count("yolo-mobilevit: inactive") == 1, out  # warned once, for two stock builds
    assert "ERROR YamlRowError" in proc.stdout, out
    assert "yolov8-mobilenetv3-large.yaml uses plugin rows" in proc.stdout
    assert "ultralytics 8.4.0 and newer 8.4 releases (tested to 8.4.190), and 8.3.100 is installed" in proc.stdout
