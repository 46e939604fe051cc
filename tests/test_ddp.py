"""Ultralytics' DDP worker path, two processes on CPU, with and without ``variable_batch``.

How the worker path is driven (Ultralytics' launcher insists on CUDA; everything else is its own code):

1. A fresh interpreter builds the ``DetectionTrainer`` and its model as ``Model.train`` does, sets
   ``trainer.world_size = 2`` (what ``device=0,1`` gives on two GPUs) and calls Ultralytics'
   ``generate_ddp_command``: its worker script (8.4.190: the cloudpickled trainer class, args, model and callbacks;
   8.4.0: the trainer rebuilt from its args) and its ``python -m torch.distributed.run --nproc_per_node 2
   --master_port PORT FILE`` command.
2. The test runs that command with one change: ``tests/ddp_cpu_worker.py`` runs before ``FILE`` in each rank. It
   never imports the plugin (the start-up hook must have); it replaces ``BaseTrainer._setup_ddp`` (CUDA device +
   nccl) with a gloo process group on CPU, makes ``torch.nn.parallel.DistributedDataParallel`` drop the
   ``device_ids`` that torch refuses for CPU modules, sets ``world_size`` from ``WORLD_SIZE`` before Ultralytics'
   ``_do_train`` (``device=cpu`` counts no devices), and records per rank the shape of every training batch and
   hashes of the parameters after the epoch.
3. The launcher runs under a timeout; a hang kills it and its workers and fails the test.

BatchNorm running statistics are not compared: Ultralytics builds DDP without buffer broadcasting, so each rank keeps
the statistics of its own images; the parameters (model and EMA) are what DDP keeps identical.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CFG, DATASETS, REPO, linked_dataset, python

from yolo_mobilevit.variable_batch import PAPER_RATIOS, VariableBatchSampler, scale_sizes, size_batches

MODEL = CFG / "yolov8n-mobilevit-xxs.yaml"
WORLD, BATCH, IMGSZ, N_TRAIN = 2, 4, 64, 16  # 16 images: 4-5 batches per rank, several sizes under variable_batch
WORKER = REPO / "tests" / "ddp_cpu_worker.py"
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def data16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 coco128 training images, coco8's 4 validation images."""
    root = tmp_path_factory.mktemp("data16")
    return linked_dataset(
        root, "coco128", DATASETS / "coco128/images/train2017", DATASETS / "coco8/images/val", N_TRAIN
    )


def _launch(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the launcher; if it outlives TIMEOUT_S, kill it and its workers (torch.distributed.run starts each in a
    session of its own) and fail."""
    import psutil  # an Ultralytics dependency

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        launcher = psutil.Process(proc.pid)
        for p in [*launcher.children(recursive=True), launcher]:
            p.kill()
        out, _ = proc.communicate()
        pytest.fail(f"DDP training hung: killed after {TIMEOUT_S} s\n{out[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"DDP training exited {proc.returncode}\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _expected_shapes(variable_batch: bool, rank: int) -> list[list[int]]:
    """The (B, C, H, W) of every training batch of epoch 0 on ``rank``: the plugin's schedule, or Ultralytics'
    DistributedSampler share (ceil(N / world) images) in batches of batch // world at imgsz."""
    per_rank = BATCH // WORLD
    if variable_batch:
        pairs = size_batches(scale_sizes(IMGSZ, 32, PAPER_RATIOS), IMGSZ, per_rank)
        steps = VariableBatchSampler(N_TRAIN, pairs, IMGSZ, seed=0, rank=rank, world_size=WORLD).steps(0)
        return [[b, 3, s, s] for s, b in steps]
    return [[per_rank, 3, IMGSZ, IMGSZ]] * math.ceil(math.ceil(N_TRAIN / WORLD) / per_rank)


@pytest.mark.slow
@pytest.mark.parametrize("variable_batch", [False, True], ids=["fixed", "variable_batch"])
def test_two_process_ddp_on_cpu(data16: Path, tmp_path: Path, variable_batch: bool):
    """Both ranks step the same batch shapes (the expected schedule), end the epoch with identical parameters, and
    rank 0's checkpoint reloads, validates and predicts in a fresh interpreter."""
    out = python(
        f"""
        import json
        from ultralytics.models.yolo.detect import DetectionTrainer
        from ultralytics.utils.dist import generate_ddp_command
        trainer = DetectionTrainer(overrides=dict(
            model={str(MODEL)!r}, data={str(data16)!r}, epochs=1, imgsz={IMGSZ}, batch={BATCH}, nbs={BATCH},
            workers=0, device="cpu", pretrained=False, project={str(tmp_path)!r}, name="ddp", exist_ok=True,
            plots=False, variable_batch={variable_batch}))
        trainer.model = trainer.get_model(cfg={str(MODEL)!r}, verbose=False)  # as Model.train does
        trainer.world_size = {WORLD}
        cmd, file = generate_ddp_command(trainer)
        print("DDPCMD", json.dumps(cmd))
        """,
        cwd=tmp_path,
    )
    cmd = json.loads(out.stdout.split("DDPCMD ", 1)[1].splitlines()[0])
    assert cmd[cmd.index("--nproc_per_node") + 1] == str(WORLD)
    records = tmp_path / "records"
    records.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "DDP_RECORDS": str(records),
           "GLOO_SOCKET_IFNAME": "lo"}  # fmt: skip
    log = _launch([*cmd[:-1], str(WORKER), cmd[-1]], cwd=tmp_path, env=env).stdout

    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for r, record in enumerate(ranks):
        assert record["startup_hook"], f"rank {r}: the plugin was not imported by the start-up hook"
        assert record["world_size"] == WORLD and record["ddp"] == "CpuDistributedDataParallel"
        assert record["shapes"] == _expected_shapes(variable_batch, r), f"rank {r}"
    assert ranks[0]["shapes"] == ranks[1]["shapes"]
    if variable_batch:
        assert len({tuple(s) for s in ranks[0]["shapes"]}) > 1, ranks[0]["shapes"]
        assert "variable_batch:" in log and "over 2 rank(s)" in log
    assert ranks[0]["epochs"] == ranks[1]["epochs"] and len(ranks[0]["epochs"]) == 1  # model and EMA hashes
    assert ranks[0]["epochs"][0]["model"] != ranks[0]["start"]  # the optimizer stepped

    best = tmp_path / "ddp" / "weights" / "best.pt"
    reload = python(
        f"""
        from ultralytics import YOLO
        model = YOLO({str(best)!r})
        print("MODULE", type(model.model.model[1]).__module__)
        metrics = model.val(data={str(data16)!r}, imgsz={IMGSZ}, batch={BATCH}, workers=0, device="cpu",
                            plots=False, project={str(tmp_path)!r}, name="val")
        print("MAP", float(metrics.box.map))
        result = model.predict({str(DATASETS / "coco8/images/val/000000000036.jpg")!r}, imgsz={IMGSZ}, device="cpu")[0]
        print("PREDICT", tuple(result.orig_shape), result.boxes.data.shape[1])
        """,
        cwd=tmp_path,
    )
    assert "MODULE yolo_mobilevit." in reload.stdout
    assert 0.0 <= float(reload.stdout.split("MAP ", 1)[1].split()[0]) <= 1.0
    assert "PREDICT (" in reload.stdout and reload.stdout.split("PREDICT ", 1)[1].split()[-1] == "6"
