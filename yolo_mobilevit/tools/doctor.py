"""``yolo-mobilevit doctor``: is the plugin active and supported here, and which map sizes reach each plugin stage.

Every check adds lines to a :class:`Report` and names each problem with what to do; :func:`run` prints them and
returns 0 exactly when there is none. A patch whose target this Ultralytics release does not have (8.4.0 has no
``ultralytics.utils.export.onnx``) is not applicable here, not a problem. Odd maps at a patch-based stage are not
problems either: the stage resizes them (see :func:`yolo_mobilevit.modules.mobilevit.on_patch_grid`), which costs
time and some accuracy.
"""

from __future__ import annotations

import math
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .._startup import ENV_SWITCH, PatchOnImport, autoload_enabled
from ..versions import OUTSIDE, TESTED, ULTRALYTICS_MIN, ULTRALYTICS_REQUIREMENT, ULTRALYTICS_TESTED, UNTESTED

PTH_FILE = "yolo_mobilevit_autoload.pth"
ACTIVE = (TESTED, UNTESTED)  # the version-policy states in which the plugin patches Ultralytics


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, line: str, problem: str | None = None, ok: bool = True) -> None:
        """One line of the report; ``problem`` (what is wrong and what to do) makes the doctor exit 1, and so does
        ``ok=False`` (the line itself is then the problem)."""
        self.lines.append(line)
        if problem or not ok:
            self.problems.append(problem or line)


def site_dirs() -> list[Path]:
    """Where a ``.pth`` file runs from: this interpreter's site-packages folders, and those of another venv added with
    ``site.addsitedir`` (a venv layered on another one; a folder on PYTHONPATH runs none)."""
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs += [d for d in sys.path if Path(d).name in ("site-packages", "dist-packages")]
    return list(dict.fromkeys(Path(d) for d in dirs))


def check_version(report: Report) -> str:
    """The version policy for the installed Ultralytics (tested / untested, self-test passed / refused / outside),
    after importing and checking every module the plugin patches. Returns the state ("missing": no Ultralytics)."""
    try:
        import ultralytics
    except ImportError as e:
        report.add(
            f"ultralytics: cannot be imported ({e})", f"install Ultralytics: pip install '{ULTRALYTICS_REQUIREMENT}'"
        )
        return "missing"
    from .. import integration

    integration.register()  # imports every patched module: on an untested release, the self-test of every row
    state, version = integration.state(), ultralytics.__version__
    tested = f"CI tests {ULTRALYTICS_MIN} to {ULTRALYTICS_TESTED}"
    if state == TESTED:
        report.add(f"ultralytics {version}: tested ({tested})")
    elif state == UNTESTED:
        report.add(
            f"ultralytics {version}: untested ({tested}); self-test passed: every patched function has the signature "
            "its wrapper expects, so the plugin is active"
        )
    else:
        verdict = "outside the version policy" if state == OUTSIDE else "untested, and the self-test REFUSED it"
        reason = integration.stand_aside_reason(state, version)
        report.add(f"ultralytics {version}: {verdict}; the plugin is inactive", f"the plugin is inactive: {reason}")
    return state


def check_activation(report: Report) -> None:
    """Start-up activation is live when the .pth file is where Python runs it and the switch is not off."""
    pth = next((d / PTH_FILE for d in site_dirs() if (d / PTH_FILE).is_file()), None)
    report.add(f"start-up file: {pth if pth else f'{PTH_FILE} not found in site-packages'}")
    switch = "on" if autoload_enabled() else f"off ({ENV_SWITCH}=0)"
    live = "live" if pth and autoload_enabled() else "NOT live (use `import yolo_mobilevit` in your code)"
    problem = None
    if not pth and autoload_enabled():
        problem = (
            f"{PTH_FILE} is missing, so the plain `yolo` CLI does not know plugin rows: reinstall the plugin "
            "(pip install --force-reinstall --no-deps yolo-mobilevit), or `import yolo_mobilevit` before Ultralytics"
        )
    report.add(f"start-up activation: {live}; {ENV_SWITCH}: {switch}", problem)
    hooked = any(isinstance(f, PatchOnImport) for f in sys.meta_path) or "ultralytics.nn.tasks" in sys.modules
    state = "installed" if hooked else "not installed"
    report.add(f"import hook in this process: {state} (importing the plugin installs it)")


def check_patches(report: Report, state: str) -> None:
    """Every row of the patch table: applied, not applicable here (this release has no such module: 8.4.0 lacks the
    export helpers), or missing (a problem: its module is here, the patch is not)."""
    from ..integration import PATCHES, is_patched, stock_target

    applied, absent, missing, rows = 0, [], [], []
    for patch in PATCHES:
        target = f"{patch.module}:{patch.attribute}"
        if patch.module not in sys.modules:  # register() imported every patched module this release has
            absent.append(target)
            rows.append(f"  n/a {target}: not applicable here (this ultralytics has no module {patch.module})")
        elif is_patched(patch):
            applied += 1
            rows.append(f"  x   {target} ({patch.why})")
        elif state in ACTIVE:
            missing.append(patch)
            rows.append(f"  !   {target}: NOT patched ({patch.why})")
        else:
            rows.append(f"  -   {target}: not patched (the plugin is inactive)")
    report.add(
        f"patches: {applied} applied, {len(absent)} not applicable here, {len(missing)} missing, of {len(PATCHES)}"
    )
    report.lines.extend(rows)
    for patch in missing:
        target = f"{patch.module}:{patch.attribute}"
        try:
            stock_target(patch)
            what = "something replaced it after the plugin patched it: import yolo_mobilevit after the package that did"
        except AttributeError:
            what = (
                f"{patch.module} has no {patch.attribute}, so the feature it serves is off: "
                f"pip install 'ultralytics=={ULTRALYTICS_TESTED}' and report it with this output"
            )
        report.add(f"patch missing: {target}", f"{target} is not patched: {what}")


def check_safe_load(report: Report, state: str) -> None:
    import torch
    from ultralytics.nn import tasks

    from ..integration import safe_classes

    if state not in ACTIVE:
        report.add("safe load: not checked (the plugin is inactive)")
        return
    if not hasattr(tasks, "_SafeLoad"):
        report.add("safe load: this Ultralytics has no restricted loading (_SafeLoad); nothing to allow-list")
        return
    if not hasattr(torch.serialization, "get_safe_globals"):
        report.add("safe load: _SafeLoad present; this torch cannot list allow-listed classes")
        return
    allowed = set(torch.serialization.get_safe_globals())
    classes = safe_classes()
    missing = sorted(c.__name__ for c in classes if c not in allowed)
    if not missing:
        report.add(f"safe load: _SafeLoad present; all {len(classes)} plugin classes allow-listed")
        return
    report.add(
        f"safe load: _SafeLoad present; not allow-listed: {', '.join(missing)}",
        f"plugin classes {missing} are not allow-listed for torch.load(weights_only=True), so plugin checkpoints fail "
        "to load with ULTRALYTICS_SAFE_LOAD=1: call yolo_mobilevit.register() after importing them, and report it",
    )


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
    report.add(f"config names: {len(configs)} shipped in {config_dir()}; {detail}; {lettered} -> scale {scale}", ok=ok)
    if here:
        report.add(f"  a file of the same name elsewhere wins (working directory or Ultralytics): {', '.join(here)}")


def check_families(report: Report) -> None:
    """The registered families (:mod:`yolo_mobilevit.families`) with how many shipped configs each has; a shipped
    config whose backbone rows belong to no family, or to several, is a problem."""
    from .. import families
    from ..configs import shipped_configs

    counts = {spec.key: 0 for spec in families.families()}
    unclaimed = []
    for path in shipped_configs():
        try:
            spec = families.family_of_config(path)
        except ValueError as e:
            unclaimed.append(f"{path.name} ({e})")
            continue
        if spec is None:
            unclaimed.append(f"{path.name} (no family owns its rows {sorted(set(families.backbone_rows(path)))})")
        else:
            counts[spec.key] += 1
    listed = ", ".join(f"{families.family(key).name} ({n} configs)" for key, n in counts.items())
    report.add(f"families: {len(counts)} registered: {listed}")
    if unclaimed:
        report.add(f"  shipped configs of no single family: {', '.join(unclaimed)}", ok=False)


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

    from ..layer_info import feature_info
    from ..modules import MobileViTStage, MobileViTv2Stage, YamlModule

    model = YOLO(cfg).model
    rows = [
        (row["index"], row["module"], row["reduction"], isinstance(m, (MobileViTStage, MobileViTv2Stage)))
        for row in feature_info(model)
        if isinstance(m := model.model[row["index"]], YamlModule) and not m.passthrough
    ]
    return rows, int(model.stride.max())


def config_family(cfg: str) -> str:
    """The display name of the family of the config ``cfg`` (a path or a name Ultralytics resolves), or why none."""
    from ultralytics.nn.tasks import yaml_model_load

    from ..families import family_of_config

    try:
        spec = family_of_config(yaml_model_load(cfg))
    except ValueError as e:
        return f"ambiguous: {e}"
    return spec.name if spec else "none (no plugin family's rows)"


def check_config(report: Report, cfg: str, imgsz: int, rect: bool, multi_scale: float) -> None:
    try:
        rows, stride = plugin_stages(cfg)
    except Exception as e:  # noqa: BLE001 - report any build failure as a problem
        report.add(f"config {cfg}: does not build", f"config {cfg} does not build: {type(e).__name__}: {e}")
        return
    from ..modules.mobilevit import PATCH

    sizes = input_sizes(imgsz, stride, rect, multi_scale)
    mode = ", ".join(filter(None, ["rect" if rect else "", f"multi_scale={multi_scale}" if multi_scale else ""]))
    report.add(f"config {cfg}: family {config_family(cfg)}")
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
    """Print the report; 0 exactly when no check found a problem, else 1 (every problem named at the end)."""
    report = Report()
    state = check_version(report)
    check_activation(report)
    if state != "missing":
        check_patches(report, state)
        check_safe_load(report, state)
        check_config_names(report)
        check_families(report)
    if cfg:
        check_config(report, cfg, imgsz, rect, multi_scale)
    print("\n".join(report.lines))
    if not report.problems:
        print("doctor: OK")
        return 0
    print(f"doctor: {len(report.problems)} problem(s):")
    print("\n".join(f"  - {problem}" for problem in report.problems))
    return 1
