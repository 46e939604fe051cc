"""What the start-up hook costs every interpreter: ``python -X importtime -c pass`` with the plugin installed.

Reports the cumulative import time of the modules the ``.pth`` line imports (``yolo_mobilevit`` ones) and the wall
time of ``python -c pass`` with the hook on and off (``YOLO_MOBILEVIT_AUTOLOAD=0``), median of ``--repeats`` runs,
interleaved. Target (issue 15): under 5 ms for the hook. Run it twice: the first run may compile bytecode.

    python benchmarks/startup_time.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def hook_import_us(env: dict[str, str]) -> int:
    """Microseconds the plugin's modules took to import in one ``python -X importtime -c pass``: the cumulative time
    of the outermost one (it includes the plugin modules it imported)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], env=env, capture_output=True, text=True, check=True
    )
    outermost = 0
    for line in proc.stderr.splitlines():  # "import time: self [us] | cumulative | imported package"
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if cumulative.isdigit() and name.startswith("yolo_mobilevit"):
            outermost = max(outermost, int(cumulative))
    return outermost


def wall_ms(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    on = {k: v for k, v in os.environ.items() if k != "YOLO_MOBILEVIT_AUTOLOAD"}
    off = {**on, "YOLO_MOBILEVIT_AUTOLOAD": "0"}
    hook, wall_on, wall_off = [], [], []
    for _ in range(args.repeats):
        hook.append(hook_import_us(on) / 1e3)
        wall_on.append(wall_ms(on))
        wall_off.append(wall_ms(off))
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {args.repeats} interleaved runs, load {load[0]:.2f}")
    print(f"hook imports (-X importtime, cumulative): median {statistics.median(hook):.2f} ms")
    print(f"python -c pass: hook on {statistics.median(wall_on):.1f} ms, off {statistics.median(wall_off):.1f} ms")


if __name__ == "__main__":
    main()
