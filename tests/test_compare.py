"""``yolo-mobilevit compare``: one tiny end-to-end run from a fresh interpreter, and the input checks."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from conftest import CFG, dataset_yaml, python, run
from helpers import files_under, private_runs_dir, run_as_user

from yolo_mobilevit import cli
from yolo_mobilevit.tools.compare import (
    FAMILIES,
    CompareError,
    accuracy_key,
    check_buildable,
    check_model,
    default_data,
    default_models,
    family,
    labels,
    parse_train_args,
    plot,
)

COMPARE = [str(Path(sys.executable).with_name("yolo-mobilevit")), "compare"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compare_end_to_end(tmp_path: Path):
    """Two models (stock + plugin) on coco8 at 64: measured, exported to ONNX, trained 1 epoch, validated, tabled."""
    args = [
        *COMPARE,
        "yolov8n.yaml",
        str(CFG / "yolov8n-mobilevit-xxs.yaml"),
        "--data", str(dataset_yaml("coco8")),
        "--imgsz", "64", "--epochs", "1", "--batch", "4", "--device", "cpu",
        "--batches", "1", "--repeats", "2", "--warmup", "1", "--no-simplify",
        "--project", str(tmp_path / "runs"), "--name", "tiny",
        "workers=0", "plots=False",
    ]  # fmt: skip
    out = run(args, cwd=tmp_path).stdout
    save_dir = tmp_path / "runs" / "tiny"
    md, csv_file, png = save_dir / "results.md", save_dir / "results.csv", save_dir / "map_vs_latency.png"
    assert f"table: {md}" in out and f"csv:   {csv_file}" in out and f"plot:  {png}" in out

    with csv_file.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "model", "source", "pretrained", "params_M", "gflops_ultralytics", "gflops_attention",
        "cpu_ms_b1", "cpu_rss_mb_b1", "ort_ms_b1", "ort_rss_mb_b1", "train_img_s", "mAP50", "mAP50-95",
        "coco_AP", "coco_AP50", "coco_AP75", "coco_APs", "coco_APm", "coco_APl", "coco_AR100",
    ]  # fmt: skip
    assert sorted(r["model"] for r in rows) == ["yolov8n", "yolov8n-mobilevit-xxs"]
    assert [float(r["ort_ms_b1"]) for r in rows] == sorted(float(r["ort_ms_b1"]) for r in rows)  # fastest first
    for r in rows:
        for key in ("params_M", "gflops_ultralytics", "gflops_attention", "cpu_ms_b1", "ort_ms_b1", "train_img_s"):
            assert float(r[key]) > 0, (r["model"], key, r[key])
        for key in ("cpu_rss_mb_b1", "ort_rss_mb_b1"):  # a forward's activations lie above the resident baseline
            assert float(r[key]) > 0, (r["model"], key, r[key])
        for key in ("mAP50", "mAP50-95", "coco_AP", "coco_AP50", "coco_AR100"):
            assert 0 <= float(r[key]) <= 1, (r["model"], key, r[key])
    (v8,) = [r for r in rows if r["model"] == "yolov8n"]
    assert abs(float(v8["params_M"]) - 3.1572) < 1e-3  # YOLOv8n: 3,157,200
    for r in rows:  # each model trained, validated and exported in its own folder
        model_dir = save_dir / r["model"]
        assert (model_dir / "train" / "weights" / "best.pt").is_file()
        assert (model_dir / "val").is_dir() and (model_dir / f"{r['model']}_b1.onnx").is_file()
        assert (model_dir / "cocoeval" / "metrics.json").is_file()

    table = md.read_text()
    assert "CPU: process RSS (VmHWM after clear_refs)" in table  # Linux: the peak is reset right before the runs
    assert "| model | pretrained | params (M) | GFLOPs@64 (Ultralytics) | GFLOPs@64 (attention counted) |" in table
    assert all(r["pretrained"] == "none" for r in rows)  # the default policy: every model from scratch
    assert table.startswith("Pretraining policy: none (--pretrained none): every model trains from scratch")
    assert table.count("\n| yolov8n") == 2 and "train(epochs=1, imgsz=64, batch=4, seed=0" in table
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_bad_models_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing_yaml = str(tmp_path / "yolov8n-nosuch.yaml")
    with pytest.raises(CompareError, match="yolov8n-nosuch.yaml"):
        check_model(missing_yaml)
    with pytest.raises(CompareError, match=r"'nosuch\.pt': checkpoint not found"):
        check_model("nosuch.pt")
    with pytest.raises(CompareError, match=r"'model\.onnx': expected a model YAML"):
        check_model("model.onnx")
    # from the command line: exit 2 with one message naming the model, before anything runs
    assert cli.main(["compare", "yolov8n.yaml", missing_yaml, "--no-train", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolo-mobilevit compare: model ") and "yolov8n-nosuch.yaml" in err
    assert list(tmp_path.iterdir()) == []  # no output folder either


def test_inputs():
    assert check_model("yolov8n.yaml") == "yolov8n.yaml"  # a config Ultralytics ships
    lettered = check_model(str(CFG / "yolov8n-mobilevit.yaml"))  # scale letter kept, file is yolov8-mobilevit.yaml
    assert lettered.endswith("cfg/yolov8n-mobilevit.yaml")
    assert parse_train_args(["optimizer=SGD", "lr0=0.02", "workers=0"]) == {
        "optimizer": "SGD",
        "lr0": 0.02,
        "workers": 0,
    }
    with pytest.raises(CompareError, match="set epochs with --epochs"):
        parse_train_args(["epochs=3"])
    with pytest.raises(CompareError, match="'lr00' is not an Ultralytics setting"):
        parse_train_args(["lr00=0.1"])
    assert labels(["a/yolov8n.yaml", "b/yolov8n.yaml", "runs/x/weights/best.pt"]) == [
        "yolov8n",
        "yolov8n-2",
        "x-best",
    ]
    seeds = ["r/yolov8n/seed0/weights/best.pt", "r/yolo26n/seed0/weights/best.pt", "weights/best.pt"]
    assert labels(seeds) == ["yolov8n-seed0-best", "yolo26n-seed0-best", "best"]  # runs that share a folder name
    assert default_data() == str(dataset_yaml("coco128"))


def test_default_models_are_stock_yolo_and_each_familys_flagship():
    """No MODEL arguments: yolo26n, yolo11n, yolov8n and one flagship per family; every one resolves and builds."""
    models = default_models()
    assert models[:3] == ["yolo26n.yaml", "yolo11n.yaml", "yolov8n.yaml"]
    assert {family(Path(m).stem)[0] for m in models} == {group for group, _ in FAMILIES}
    for m in models:
        check_buildable(check_model(m))


def test_plot_one_marker_per_family(tmp_path: Path):
    """Families by name; COCO AP on the y axis when measured, else mAP50-95; no file without a point to plot."""
    assert [family(n)[0] for n in ("yolo26n", "yolov8n-mobilevitv2-050", "yolo26n-mobilevit", "m-mobilenetv3-large",
                                   "yolo26n-mobileformer-151m")] == ["stock YOLO", "MobileViTv2", "MobileViT",
                                                                     "MobileNet", "Mobile-Former"]  # fmt: skip
    rows = [
        {"model": "yolo26n", "ort_ms_b1": 5.0, "coco_AP": 0.10, "mAP50-95": 0.2},
        {"model": "yolov8n", "ort_ms_b1": 6.0, "coco_AP": 0.08, "mAP50-95": 0.2},
        {"model": "yolo26n-mobilevit", "ort_ms_b1": 20.0, "coco_AP": 0.12, "mAP50-95": 0.2},
    ]
    assert accuracy_key(rows)[0] == "coco_AP" and accuracy_key([{"mAP50-95": 0.1}])[0] == "mAP50-95"
    png = tmp_path / "plot.png"
    assert plot(rows, "ort_ms_b1", "latency", "t", png) and png.read_bytes()[:8] == PNG_MAGIC
    assert not plot([{"model": "x", "ort_ms_b1": 1.0}], "ort_ms_b1", "latency", "t", tmp_path / "none.png")


@pytest.mark.slow
def test_peak_rss_is_what_the_runs_allocate(tmp_path: Path):
    """The peak resident set reported for a run is what that run touched above the memory resident before it, in MB
    (1e6 bytes): about 100 MB for a function filling a 100 MB tensor, next to nothing for one that allocates nothing.
    Measured in a fresh interpreter: what earlier tests left in this process' allocator would count too."""
    code = (
        "import torch\n"
        "from yolo_mobilevit.tools.compare import time_and_peak_rss\n"
        "def fill_100mb():\n"
        "    torch.ones(25_000_000)  # float32: 1e8 bytes, touched, freed on return\n"
        "_, big, method = time_and_peak_rss(fill_100mb, repeats=2, warmup=1)\n"
        "_, none, _ = time_and_peak_rss(lambda: None, repeats=2, warmup=1)\n"
        "print(f'RESULT {big} {none} {method}')\n"
    )
    out = python(code, cwd=tmp_path).stdout
    big, none, method = out[out.index("RESULT ") + 7 :].strip().split(" ", 2)
    assert method == "VmHWM after clear_refs"  # Linux; elsewhere the lifetime peak (None when not above the baseline)
    assert 90 <= float(big) < 130, big  # pages the allocator already held count in the baseline
    assert 0 <= float(none) < 5, none


@pytest.mark.slow
def test_no_train_validates_checkpoints_as_they_are(tmp_path: Path):
    """``--no-train`` on a checkpoint: val and COCO columns, a plot; a YAML beside it is measured only."""
    from ultralytics import YOLO

    checkpoint = tmp_path / "untrained.pt"
    YOLO("yolov8n.yaml").save(checkpoint)
    argv = ["compare", str(checkpoint), "yolov8n.yaml", "--no-train", "--no-onnx", "--data", str(dataset_yaml("coco8"))]
    argv += ["--imgsz", "64", "--batches", "1", "--repeats", "1", "--warmup", "0", "--device", "cpu"]
    assert cli.main([*argv, "--project", str(tmp_path), "--name", "cmp", "workers=0", "plots=False"]) == 0
    with (tmp_path / "cmp" / "results.csv").open() as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert "coco_AP" in rows["untrained"] and "train_img_s" not in rows["untrained"]
    assert 0 <= float(rows["untrained"]["coco_AP"]) <= 1 and 0 <= float(rows["untrained"]["mAP50-95"]) <= 1
    assert rows["yolov8n"]["coco_AP"] == "" and float(rows["yolov8n"]["cpu_ms_b1"]) > 0
    assert (tmp_path / "cmp" / "untrained" / "cocoeval" / "metrics.json").is_file()
    assert "No training (--no-train)" in (tmp_path / "cmp" / "results.md").read_text()


def imagenet_mirror(folder: Path) -> Path:
    """A weights mirror (``YOLO_MOBILEVIT_WEIGHTS_MIRROR``) with shape-correct stand-ins for ImageNet weights:
    Ultralytics' ``yolov8n-cls.pt`` (a real YOLOv8n-cls model saved as an Ultralytics checkpoint) and timm's
    ``mobilevit_xxs`` state dict (the source format ``backbone_weights`` names)."""
    import timm
    import torch
    from ultralytics import YOLO

    (folder / "ultralytics").mkdir(parents=True)
    (folder / "timm").mkdir()
    YOLO("yolov8n-cls.yaml").save(folder / "ultralytics" / "yolov8n-cls.pt")
    torch.save(timm.create_model("mobilevit_xxs").state_dict(), folder / "timm" / "mobilevit_xxs.cvnets_in1k.pth")
    return folder


def test_imagenet_start_loads_the_classifier_backbone_into_a_stock_detector(tmp_path, monkeypatch):
    """yolov8n.yaml under ``imagenet``: layers 0-8 of yolov8n-cls.pt (all but its Classify head) land in the
    detector; the head and SPPF keep their initialisation."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import load_checkpoint

    from yolo_mobilevit.tools.pretraining import Start, classifier_name

    mirror = imagenet_mirror(tmp_path / "mirror")
    monkeypatch.setenv("YOLO_MOBILEVIT_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setattr("yolo_mobilevit.weights_store.cache_dir", lambda: tmp_path / "cache")
    model = YOLO("yolov8n.yaml").model
    assert classifier_name(model) == "yolov8n-cls.pt"
    assert classifier_name(YOLO("yolo26s.yaml").model) == "yolo26s-cls.pt"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = Start("imagenet")
    start(model)
    classifier, _ = load_checkpoint(mirror / "ultralytics" / "yolov8n-cls.pt")
    theirs = {k: v for k, v in classifier.state_dict().items() if int(k.split(".")[1]) < len(classifier.model) - 1}
    ours = model.state_dict()
    in_backbone = [k for k in ours if int(k.split(".")[1]) < len(model.yaml["backbone"])]
    assert (
        start.loaded
        and start.description == f"ImageNet (yolov8n-cls.pt, {len(theirs)}/{len(in_backbone)} backbone tensors)"
    )
    assert all(ours[k].equal(v) for k, v in theirs.items())
    assert all(ours[k].equal(before[k]) for k in ours if k not in theirs)


def test_policy_note_flags_models_that_loaded_nothing():
    from yolo_mobilevit.tools.compare import pretraining_policy_note

    rows = [
        {"model": "a", "pretrained": "ImageNet (x, 3/3 tensors)", "pretrained_loaded": True},
        {"model": "b", "pretrained": "none (yolov8n-cls.pt unavailable, offline)", "pretrained_loaded": False,
         "pretrained_problem": "yolov8n-cls.pt not in W, and downloads are off (YOLO_OFFLINE)"},
    ]  # fmt: skip
    note = pretraining_policy_note("imagenet", True, rows)
    assert "**NOT COMPARABLE: 1 of 2 models loaded no ImageNet weights and trained from scratch: b (none (" in note
    assert "- b: yolov8n-cls.pt not in W, and downloads are off (YOLO_OFFLINE)" in note
    assert "NOT COMPARABLE" not in pretraining_policy_note("imagenet", True, rows[:1])
    assert pretraining_policy_note("none", True, rows).startswith("Pretraining policy: none")


@pytest.mark.slow
def test_compare_imagenet_policy_loads_every_backbone_and_writes_only_under_project(tmp_path: Path):
    """A stock and a plugin YAML, tiny, ``--pretrained imagenet``: both load ImageNet weights (from a local mirror),
    and results.md and the CSV say what each loaded (the default ``none``, neither: test_compare_end_to_end). Run
    from an empty working directory: nothing lands there or in Ultralytics' runs dir. Progress: one line per model
    and phase; notes: one epoch flagged as warm-up-bound, 4 training images and 1 timed run as timing noise."""
    from ultralytics import YOLO

    from yolo_mobilevit.layer_info import plugin_rows

    env, runs_dir = private_runs_dir(tmp_path)
    env["YOLO_MOBILEVIT_WEIGHTS_MIRROR"] = str(imagenet_mirror(tmp_path / "mirror"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    plugin = CFG / "yolov8n-mobilevit-xxs.yaml"
    args = [
        sys.executable, "-m", "yolo_mobilevit.cli", "compare", "yolov8n.yaml", str(plugin),
        "--pretrained", "imagenet", "--data", str(dataset_yaml("coco8")),
        "--imgsz", "64", "--epochs", "1", "--batch", "4", "--device", "cpu", "--no-onnx",
        "--batches", "1", "--repeats", "1", "--warmup", "0",
        "--project", str(tmp_path / "out"), "--name", "imagenet", "workers=0", "plots=False",
    ]  # fmt: skip
    out = run_as_user(args, cwd, env).stdout
    for k, label in enumerate(("yolov8n", "yolov8n-mobilevit-xxs"), 1):
        for phase in ("latency", "train", "val", "COCO eval"):
            assert f"compare: model {k} of 2 ({label}): {phase}, " in out, (label, phase)
    assert files_under(cwd) == [] and files_under(runs_dir) == []

    with (tmp_path / "out" / "imagenet" / "results.csv").open() as f:
        loaded = {r["model"]: r["pretrained"] for r in csv.DictReader(f)}
    classifier = YOLO("yolov8n-cls.yaml").model
    transferable = sum(1 for k in classifier.state_dict() if int(k.split(".")[1]) < len(classifier.model) - 1)
    detector = YOLO("yolov8n.yaml").model
    backbone = sum(1 for k in detector.state_dict() if int(k.split(".")[1]) < len(detector.yaml["backbone"]))
    rows = sum(len(m.state_dict()) for _, m in plugin_rows(YOLO(str(plugin)).model))
    assert loaded == {
        "yolov8n": f"ImageNet (yolov8n-cls.pt, {transferable}/{backbone} backbone tensors)",
        "yolov8n-mobilevit-xxs": f"ImageNet (timm/mobilevit_xxs.cvnets_in1k, {rows}/{rows} tensors)",
    }
    md = (tmp_path / "out" / "imagenet" / "results.md").read_text()
    assert md.startswith("Pretraining policy: imagenet (--pretrained imagenet)") and "NOT COMPARABLE" not in md
    assert f"| yolov8n | {loaded['yolov8n']} |" in md
    assert "one training epoch, warm-up included" in md and "warm-up-bound" in md
    assert "Timing noise: 4 training images, fewer than 4 batches of 4" in md
    assert "Timing noise: 1 timed run(s) per latency figure" in md
