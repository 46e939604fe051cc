"""``yolo-mobilevit doctor``: is the plugin active and supported here, and which map sizes reach each plugin stage.

Every check returns lines of text; :func:`run` prints them and returns the exit status (1 when a check fails: an
unsupported Ultralytics, or a config that does not build). Odd maps at a patch-based stage are not failures: the
stage resizes them (see :func:`yolo_mobilevit.modules.mobilevit.on_patch_grid`), which costs time and some accuracy.
"""

from __future__ import annotations

import math
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .._startup import ENV_SWITCH, PatchOnImport, autoload_enabled
from ..versions import ULTRALYTICS_MAX, ULTRALYTICS_MIN, is_supported

PTH_FILE = "yolo_mobilevit_autoload.pth"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def add(self, line: str, ok: bool = True) -> None:
        self.lines.append(line)
        self.failed |= not ok


def site_dirs() -> list[Path]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [Path(d) for d in dirs]


def check_version(report: Report) -> None:
    try:
        from importlib.metadata import version

        installed = version("ultralytics")
    except Exception:  # noqa: BLE001 - not installed or broken metadata
        report.add("ultralytics: not installed", ok=False)
        return
    ok = is_supported(installed)
    verdict = "supported" if ok else "NOT supported"
    report.add(f"ultralytics {installed}: {verdict} (this plugin supports {ULTRALYTICS_MIN} to {ULTRALYTICS_MAX})", ok)


def check_activation(report: Report) -> None:
    """Start-up activation is live when the .pth file is in site-packages and the switch is not off."""
    pth = next((d / PTH_FILE for d in site_dirs() if (d / PTH_FILE).is_file()), None)
    report.add(f"start-up file: {pth if pth else f'{PTH_FILE} not found in site-packages'}")
    switch = "on" if autoload_enabled() else f"off ({ENV_SWITCH}=0)"
    live = "live" if pth and autoload_enabled() else "NOT live (use `import yolo_mobilevit` in your code)"
    report.add(f"start-up activation: {live}; {ENV_SWITCH}: {switch}")
    hooked = any(isinstance(f, PatchOnImport) for f in sys.meta_path) or "ultralytics.nn.tasks" in sys.modules
    state = "installed" if hooked else "not installed"
    report.add(f"import hook in this process: {state} (importing the plugin installs it)")


def check_safe_load(report: Report) -> None:
    import torch
    from ultralytics.nn import tasks

    from ..integration import PATCHES, is_patched, register, safe_classes

    register()
    applied = [p for p in PATCHES if is_patched(p)]
    report.add(f"patches applied: {len(applied)} of {len(PATCHES)}", ok=len(applied) == len(PATCHES))
    for p in PATCHES:
        report.add(f"  {'x' if p in applied else ' '} {p.module}:{p.attribute} ({p.why})")
    if not hasattr(tasks, "_SafeLoad"):
        report.add("safe load: this Ultralytics has no restricted loading (_SafeLoad); nothing to allow-list")
        return
    if not hasattr(torch.serialization, "get_safe_globals"):
        report.add("safe load: _SafeLoad present; this torch cannot list allow-listed classes")
        return
    allowed = set(torch.serialization.get_safe_globals())
    classes = safe_classes()
    missing = sorted(c.__name__ for c in classes if c not in allowed)
    ok = not missing
    detail = f"all {len(classes)} plugin classes allow-listed" if ok else f"not allow-listed: {', '.join(missing)}"
    report.add(f"safe load: _SafeLoad present; {detail}", ok)


def check_config_names(report: Report) -> None:
    """Every shipped config resolves by its bare name, as ``yolo train model=NAME`` looks it up from this folder,
    and so does one name with a scale letter."""
    from ultralytics.nn.tasks import check_yaml, yaml_model_load

    from ..configs import config_dir, scaled_name, shipped_configs
    from ..integration import register

    register()
    configs = shipped_configs()
    if not configs:
        report.add("config names: no shipped configs found (this install lacks yolo_mobilevit/cfg)", ok=False)
        return
    found = {p.name: check_yaml(p.name, hard=False) for p in configs}
    missing = sorted(name for name, path in found.items() if not path)
    here = sorted(name for name, path in found.items() if path and Path(path).resolve() != (config_dir() / name))
    lettered = scaled_name(configs[0].name, "n")
    try:
        scale = yaml_model_load(lettered)["scale"]
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        scale = f"does not load: {e}"
    ok = not missing and scale == "n"
    detail = f"unresolved: {', '.join(missing)}" if missing else "all resolve by bare name"
    report.add(f"config names: {len(configs)} shipped in {config_dir()}; {detail}; {lettered} -> scale {scale}", ok)
    if here:
        report.add(f"  a file of the same name elsewhere wins (working directory or Ultralytics): {', '.join(here)}")


def input_sizes(imgsz: int, stride: int, rect: bool, multi_scale: float) -> list[int]:
    """Square-side sizes training can feed: imgsz; rect adds every stride multiple up to ceil(imgsz/stride + 0.5)
    strides (the padded long side, e.g. 672 at 640); multi-scale adds imgsz*(1-m) .. imgsz*(1+m) in stride steps."""
    sizes = {math.ceil(imgsz / stride) * stride}
    if rect:
        sizes |= set(range(stride, math.ceil(imgsz / stride + 0.5) * stride + 1, stride))
    if multi_scale > 0:
        low, high = max(stride, int(imgsz * (1 - multi_scale))), int(imgsz * (1 + multi_scale) + stride)
        sizes |= {s // stride * stride for s in range(low, high)}
    return sorted(sizes)


def plugin_stages(cfg: str) -> tuple[list[tuple[int, str, int, bool]], int]:
    """(layer index, module name, output stride, patch-based) per plugin row with a map of its own, and the
    model's max stride, from the model's static feature map (no forward pass)."""
    from ultralytics import YOLO

    from ..featuremap import feature_info
    from ..modules import MobileViTStage, MobileViTv2Stage, YamlModule

    model = YOLO(cfg).model
    rows = [
        (row["index"], row["module"], row["reduction"], isinstance(m, (MobileViTStage, MobileViTv2Stage)))
        for row in feature_info(model)
        if isinstance(m := model.model[row["index"]], YamlModule) and not m.passthrough
    ]
    return rows, int(model.stride.max())


def check_config(report: Report, cfg: str, imgsz: int, rect: bool, multi_scale: float) -> None:
    try:
        rows, stride = plugin_stages(cfg)
    except Exception as e:  # noqa: BLE001 - report any build failure as a failed check
        report.add(f"config {cfg}: does not build: {e}", ok=False)
        return
    from ..modules.mobilevit import PATCH

    sizes = input_sizes(imgsz, stride, rect, multi_scale)
    mode = ", ".join(filter(None, ["rect" if rect else "", f"multi_scale={multi_scale}" if multi_scale else ""]))
    report.add(f"config {cfg}: imgsz {imgsz}{f' ({mode})' if mode else ''}; input sides {sizes}")
    resized = []
    for i, name, s, patched in rows:
        maps = sorted({math.ceil(side / s) for side in sizes})
        odd = [m for m in maps if m % PATCH]
        if not patched:
            verdict = "no patches"
        elif odd:
            verdict = f"RESIZE at {odd}"
            resized.append(i)
        else:
            verdict = "native"
        report.add(f"  layer {i:>2} {name:<18} stride {s:>2}: maps {maps} -> {verdict}")
    if resized:
        report.add(f"patch stages: {len(resized)} use the resize path (odd maps) at some sizes: layers {resized}")
    else:
        report.add("patch stages: all maps native (even)")


def run(cfg: str | None = None, imgsz: int = 640, rect: bool = False, multi_scale: float = 0.0) -> int:
    report = Report()
    check_version(report)
    check_activation(report)
    if not report.failed:
        check_safe_load(report)
        check_config_names(report)
    if cfg and not report.failed:
        check_config(report, cfg, imgsz, rect, multi_scale)
    print("\n".join(report.lines))
    print("doctor: problems found" if report.failed else "doctor: OK")
    return int(report.failed)
