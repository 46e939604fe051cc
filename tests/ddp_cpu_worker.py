"""One DDP rank of Ultralytics' own worker script, on CPU with gloo (run by ``torch.distributed.run``; see
tests/test_ddp.py). Usage: ``python -m torch.distributed.run --nproc_per_node 2 ddp_cpu_worker.py DDP_FILE``.

Ultralytics' workers assume one CUDA device per rank; four things differ here, and only in this process:

- ``BaseTrainer._do_train``: the trainer counts the devices of ``device=`` (``cpu`` gives 0 or 1, so no DDP); the
  wrapper sets ``world_size`` to ``WORLD_SIZE``, as ``device=0,1`` does on two GPUs, then runs Ultralytics' loop.
- ``BaseTrainer._setup_ddp``: Ultralytics' sets the rank's CUDA device and picks nccl; here the device stays ``cpu``
  and the process group is gloo (same rank, world size and init method).
- ``torch.nn.parallel.DistributedDataParallel``: Ultralytics passes ``device_ids=[rank]``, which torch refuses for a
  CPU module; the subclass drops them.
- The final validation of ``best.pt`` (on every rank, statistics gathered on rank 0): the validator puts the model on
  ``cuda:<rank>`` (8.4.190 asks ``torch.cuda.current_device()``); here ``current_device`` answers the local rank and
  the validator's ``AutoBackend`` loads the model on ``cpu``.

The plugin is not imported here: the start-up hook (the ``.pth`` file) must have imported it before this line runs.
Each rank writes ``$DDP_RECORDS/rank{RANK}.json``: the input shape of every training batch, a hash of the model's
parameters at the start, and hashes of the model's and its EMA's parameters at the end of each epoch.
"""

import sys

STARTUP_HOOK = "yolo_mobilevit" in sys.modules  # before anything else is imported

import hashlib
import json
import os
import runpy
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

RANK, LOCAL_RANK, WORLD_SIZE = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
RECORDS = Path(os.environ["DDP_RECORDS"])
COLLECTIVE_TIMEOUT = timedelta(seconds=120)  # a rank that waits on a missing peer fails instead of hanging


def params_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        digest.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class CpuDistributedDataParallel(nn.parallel.DistributedDataParallel):
    def __init__(self, module: nn.Module, device_ids=None, **kwargs) -> None:
        super().__init__(module, device_ids=None, **kwargs)  # CPU modules take no device ids


nn.parallel.DistributedDataParallel = CpuDistributedDataParallel

from ultralytics.engine import validator
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils.torch_utils import unwrap_model


class CpuAutoBackend(AutoBackend):
    def __init__(self, *args, device=None, **kwargs) -> None:
        super().__init__(*args, device=torch.device("cpu"), **kwargs)


def _setup_ddp(self) -> None:
    dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT, rank=RANK, world_size=self.world_size)


def _recorders(trainer: BaseTrainer) -> None:
    record = {"startup_hook": STARTUP_HOOK, "rank": RANK, "shapes": [], "epochs": []}

    def on_train_start(trainer: BaseTrainer) -> None:
        def pre_hook(module: nn.Module, args: tuple) -> None:
            if module.training:
                record["shapes"].append(list(args[0].shape))

        unwrap_model(trainer.model).model[0].register_forward_pre_hook(pre_hook)
        record["start"] = params_hash(unwrap_model(trainer.model))
        record["world_size"] = dist.get_world_size()
        record["ddp"] = type(trainer.model).__name__

    def on_train_epoch_end(trainer: BaseTrainer) -> None:
        model, ema = unwrap_model(trainer.model), trainer.ema.ema
        record["epochs"].append(
            {"model": params_hash(model), "ema": params_hash(ema), "batches": len(record["shapes"])}
        )
        (RECORDS / f"rank{RANK}.json").write_text(json.dumps(record))

    trainer.add_callback("on_train_start", on_train_start)
    trainer.add_callback("on_train_epoch_end", on_train_epoch_end)


_do_train = BaseTrainer._do_train


def _do_train_ddp(self, *args, **kwargs):
    self.world_size = WORLD_SIZE
    _recorders(self)
    return _do_train(self, *args, **kwargs)


BaseTrainer._setup_ddp = _setup_ddp
torch.cuda.current_device = lambda: LOCAL_RANK
validator.AutoBackend = CpuAutoBackend
BaseTrainer._do_train = _do_train_ddp

if __name__ == "__main__":
    runpy.run_path(sys.argv[1], run_name="__main__")
