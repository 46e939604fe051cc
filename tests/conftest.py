"""Shared test fixtures: repo paths, the offline datasets, and a `yolo` CLI runner that uses fresh interpreters."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

# Each xdist worker gets its share of the CPUs. With torch's default (every core per process) two workers on two cores
# ran test_configs 3.2x slower than with one thread each (159 s against 49 s), as OpenMP threads wait on each other.
# Set before torch is imported, so the workers' subprocesses (the `yolo` CLI) inherit it.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _XDIST_WORKERS))

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "cfg"
SHARED_DATASETS = Path(os.environ.get("YOLO_MOBILEVIT_DATASETS", REPO.parent / "shared" / "datasets"))


def _private_copy(source: Path) -> Path:
    """The datasets copied into a temporary folder of this process (without label caches), so the label caches
    Ultralytics writes beside the labels never land in the shared folder; removed at exit."""
    target = Path(tempfile.mkdtemp(prefix="yolo_mobilevit_datasets_"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.cache"), dirs_exist_ok=True)
    return target


DATASETS = _private_copy(SHARED_DATASETS)
os.environ["YOLO_MOBILEVIT_DATASETS"] = str(DATASETS)  # subprocesses and `compare`'s default data read the copy too
PY = sys.executable


def _yolo_bin() -> Path:
    """Ultralytics' ``yolo`` console script of this interpreter. In a venv layered on another (CI's newest-torch
    venv), Ultralytics and its script live in the base venv: an equal launcher of this interpreter is written, so
    ``sys.argv[0]`` is ``.../yolo`` as on a user's machine."""
    beside = Path(PY).with_name("yolo")
    if beside.exists():
        return beside
    launcher = Path(tempfile.mkdtemp(prefix="yolo_bin_")) / "yolo"
    atexit.register(shutil.rmtree, launcher.parent, ignore_errors=True)
    launcher.write_text(f"#!{PY}\nimport sys\nfrom ultralytics.cfg import entrypoint\nsys.exit(entrypoint())\n")
    launcher.chmod(0o755)
    return launcher


YOLO_BIN = _yolo_bin()
# the YOLOv8 / YOLO11 configs, and apart from them the YOLO26 ones (end-to-end heads; tests/test_yolo26.py)
SHIPPED_CONFIGS = sorted(p.name for p in CFG.glob("*.yaml") if not p.name.startswith("yolo26-"))
YOLO26_CONFIGS = sorted(  # the semantic / depth ones have their own tests (tests/test_semantic_depth.py)
    p.name for p in CFG.glob("yolo26-*.yaml") if not p.stem.endswith(("-sem", "-depth"))
)


# ---- every test session: a fresh Ultralytics settings folder and a clean, offline environment ----------------------
# Set here, before any test module imports Ultralytics (which reads them at import), and inherited by every subprocess.
# The caller's settings folder, weights caches, mirror and switches must not change what a test loads or downloads.
DROPPED_ENV = (
    "YOLO_VERBOSE",
    "YOLO_AUTOINSTALL",  # Ultralytics' log level (tests read its logs) and pip installs
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",  # a DDP launcher's, read by Ultralytics at import
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",  # they would override HF_HOME below
)
KEPT_PLUGIN_ENV = ("YOLO_MOBILEVIT_DATASETS",)  # the datasets' source, replaced by the private copy above
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")  # what Ultralytics' check_font asks for (every check_det_dataset, plots)
OFF_SETTINGS = ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def clean_environment(environ: dict[str, str], session: Path) -> dict[str, str]:
    """``environ`` without the plugin's switches (every ``YOLO_MOBILEVIT_*`` but the datasets) and the variables in
    :data:`DROPPED_ENV`, offline, with Ultralytics' settings folder and the torch / Hugging Face caches in
    ``session``."""
    clean = {
        k: v
        for k, v in environ.items()
        if k not in DROPPED_ENV and not (k.startswith("YOLO_MOBILEVIT_") and k not in KEPT_PLUGIN_ENV)
    }
    clean.update(
        YOLO_CONFIG_DIR=str(session / "config"),
        YOLO_OFFLINE="1",  # the few tests that test downloading serve 127.0.0.1
        TORCH_HOME=str(session / "torch"),
        HF_HOME=str(session / "huggingface"),
        HF_HUB_OFFLINE="1",
    )
    return clean


def seed_fonts(config_dir: Path) -> None:
    """Ultralytics' fonts in its settings folder (``YOLO_CONFIG_DIR/Ultralytics``), so ``check_font`` finds them there
    instead of downloading: matplotlib's DejaVu Sans (an Ultralytics dependency) under each name in :data:`FONTS`."""
    import importlib.util

    matplotlib = Path(next(iter(importlib.util.find_spec("matplotlib").submodule_search_locations)))
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONTS:
        shutil.copyfile(matplotlib / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf", config_dir / name)


SESSION = Path(tempfile.mkdtemp(prefix="yolo_mobilevit_session_"))
atexit.register(shutil.rmtree, SESSION, ignore_errors=True)
_clean = clean_environment(dict(os.environ), SESSION)
for _name in set(os.environ) - set(_clean):
    del os.environ[_name]
os.environ.update(_clean)
seed_fonts(SESSION / "config" / "Ultralytics")

from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

if USER_CONFIG_DIR != SESSION / "config" / "Ultralytics":
    raise RuntimeError(f"ultralytics was imported before tests/conftest.py set YOLO_CONFIG_DIR: {USER_CONFIG_DIR}")
SETTINGS.update(
    datasets_dir=str(DATASETS),  # a bare dataset name (coco8.yaml) resolves to the private copy, never a download
    weights_dir=str(SESSION / "weights"),  # the plugin's weights cache: empty unless a test fills it
    runs_dir=str(SESSION / "runs"),
    **{k: False for k in OFF_SETTINGS if k in SETTINGS},
)


def dataset_yaml(name: str) -> Path:
    path = DATASETS / name / f"{name}.yaml"
    if not path.exists():
        pytest.fail(f"dataset {path} not found; set YOLO_MOBILEVIT_DATASETS to the folder holding {name}/")
    return path


def _link_split(src_images: Path, dst: Path, split: str, limit: int | None = None) -> None:
    """Symlink images (and their label files) so Ultralytics writes its label caches under tmp, not in datasets."""
    src_labels = Path(str(src_images).replace("/images/", "/labels/"))
    for sub in ("images", "labels"):
        (dst / sub / split).mkdir(parents=True, exist_ok=True)
    for image in sorted(src_images.glob("*.jpg"))[:limit]:
        (dst / "images" / split / image.name).symlink_to(image)
        label = src_labels / f"{image.stem}.txt"
        if label.exists():
            (dst / "labels" / split / label.name).symlink_to(label)


def linked_dataset(root: Path, names_from: str, train: Path, val: Path, limit: int | None = None) -> Path:
    """A dataset YAML in ``root`` over symlinks to the first ``limit`` images of ``train`` and all of ``val``, with
    the class names of dataset ``names_from``."""
    _link_split(train, root, "train", limit)
    _link_split(val, root, "val")
    data = yaml.safe_load((DATASETS / names_from / f"{names_from}.yaml").read_text())
    data.update(path=str(root), train="images/train", val="images/val")
    data.pop("download", None)
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run a command in a fresh interpreter; fail the test with its output if it exits non-zero."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "YOLO_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def python(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run (dedented) Python code in a fresh interpreter, as ``run`` does."""
    return run([PY, "-c", textwrap.dedent(code)], cwd=cwd, env=env)


def yolo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run([str(YOLO_BIN), *args], cwd=cwd, env=env)


def train_args(
    model: str | Path, project: Path, name: str = "train", epochs: int = 1, imgsz: int = 64, workers: int = 0
) -> list[str]:
    return [
        "train",
        f"model={model}",
        f"data={dataset_yaml('coco8')}",
        f"epochs={epochs}",
        f"imgsz={imgsz}",
        "batch=4",
        f"workers={workers}",
        "device=cpu",
        f"project={project}",
        f"name={name}",
        "exist_ok=True",
        "plots=False",
    ]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `yolo train` of the flagship config from the plain CLI (the plugin is never imported explicitly), with
    dataloader worker processes."""
    root = tmp_path_factory.mktemp("flagship")
    yolo(*train_args(CFG / "yolov8n-mobilevit.yaml", root, workers=2), cwd=root)
    return root / "train"
