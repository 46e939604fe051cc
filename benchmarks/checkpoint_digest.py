"""What the checkpoint integrity checks cost, for the flagship config (``cfg/yolov8n-mobilevit.yaml``).

    python benchmarks/checkpoint_digest.py              # writes benchmarks/results/checkpoint_digest.md

Save: the trainer's checkpoint write (``BaseTrainer.save_model`` on a stand-in trainer: deep copy to fp16, serialise,
write ``last.pt`` and ``best.pt``) without and with the plugin's hook (which adds one SHA-256 of the fp16 weights).
Load: Ultralytics' ``torch_safe_load`` unwrapped, and wrapped by the plugin (zip CRC check of every record, version
scan, unpickling, digest recomputed), the same file from the page cache. Variants are timed round-robin (interleaved)
so machine load affects both alike; the table gives the median of ``--repeats`` rounds after ``--warmup`` rounds, in
milliseconds, on ``--threads`` torch threads, with ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _trainer(model: torch.nn.Module, folder: Path) -> SimpleNamespace:
    return SimpleNamespace(
        ema=SimpleNamespace(ema=model, updates=0), model=model, epoch=0, best_fitness=1.0, fitness=1.0,
        stopper=SimpleNamespace(best_fitness=1.0, best_epoch=0), optimizer=torch.optim.SGD(model.parameters(), 0.1),
        scaler=SimpleNamespace(state_dict=dict), args=SimpleNamespace(), metrics={}, read_results_csv=dict,
        wdir=folder, last=folder / "last.pt", best=folder / "best.pt", save_period=-1,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=str(ROOT / "cfg" / "yolov8n-mobilevit.yaml"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "checkpoint_digest.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn import tasks

    import yolo_mobilevit  # noqa: F401
    from yolo_mobilevit.checkpoints import DIGEST_KEY, make_save_model, weights_digest, zip_damage
    from yolo_mobilevit.integration import MARKER

    model = tasks.DetectionModel(args.cfg, verbose=False)
    plain_save = getattr(BaseTrainer.save_model, MARKER, BaseTrainer.save_model)
    hooked_save = make_save_model(plain_save)
    plain_load = getattr(tasks.torch_safe_load, MARKER, tasks.torch_safe_load)
    hooked_load = tasks.torch_safe_load
    assert hooked_load is not plain_load, "the plugin's torch_safe_load patch is not applied"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain, hooked = _trainer(model, folder / "plain"), _trainer(model, folder / "hooked")
        variants = {
            "save: Ultralytics": lambda: plain_save(plain),
            "save: with digest hook": lambda: hooked_save(hooked),
            "load: Ultralytics": lambda: plain_load(hooked.last),
            "load: plugin (CRC + digest)": lambda: hooked_load(hooked.last),
            "  of which zip CRC check": lambda: zip_damage(hooked.last),
            "  of which SHA-256 of loaded weights": lambda: weights_digest(loaded),
        }
        hooked_save(hooked)
        loaded = plain_load(hooked.last)[0]["ema"]
        assert getattr(loaded.model, DIGEST_KEY) == weights_digest(loaded)
        size = hooked.last.stat().st_size
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.warmup + args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                if round_ >= args.warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
        load_after = os.getloadavg()

    med = {name: statistics.median(t) for name, t in times.items()}
    lines = [
        (
            f"`python benchmarks/checkpoint_digest.py --threads {args.threads} --repeats {args.repeats} "
            f"--warmup {args.warmup}`; {Path(args.cfg).name}, last.pt {size / 1e6:.1f} MB "
            f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, fp16); torch {torch.__version__}, "
            f"{args.threads} thread(s); median of {args.repeats} interleaved rounds after {args.warmup} warm-up; "
            f"loadavg before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}"
        ),
        "",
        "| step | median ms | min ms |",
        "|---|---|---|",
        *(f"| {name} | {med[name]:.1f} | {min(times[name]):.1f} |" for name in variants),
        "",
        (
            f"save overhead: {med['save: with digest hook'] / med['save: Ultralytics']:.2f}x "
            f"(+{med['save: with digest hook'] - med['save: Ultralytics']:.1f} ms per checkpoint write)"
        ),
        (
            f"load overhead: {med['load: plugin (CRC + digest)'] / med['load: Ultralytics']:.2f}x "
            f"(+{med['load: plugin (CRC + digest)'] - med['load: Ultralytics']:.1f} ms per load)"
        ),
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
