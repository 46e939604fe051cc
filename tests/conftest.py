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
YOLO_BIN = Path(PY).with_name("yolo")
# the YOLOv8 / YOLO11 configs, and apart from them the YOLO26 ones (end-to-end heads; tests/test_yolo26.py)
SHIPPED_CONFIGS = sorted(p.name for p in CFG.glob("*.yaml") if not p.name.startswith("yolo26-"))
YOLO26_CONFIGS = sorted(  # the semantic / depth ones have their own tests (tests/test_semantic_depth.py)
    p.name for p in CFG.glob("yolo26-*.yaml") if not p.stem.endswith(("-sem", "-depth"))
)

os.environ["YOLO_OFFLINE"] = "1"  # tests never reach the network; the few that test downloading serve 127.0.0.1


def dataset_yaml(name: str) -> Path:
    path = DATASETS / name / f"{name}.yaml"
    if not path.exists():
        pytest.fail(f"dataset {path} not found; set YOLO_MOBILEVIT_DATASETS to the folder holding {name}/")
    return path


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
