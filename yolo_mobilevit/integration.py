"""Everything that touches Ultralytics' internals lives here: one table of every patch, the one helper that applies
them, and the training keys the plugin adds to Ultralytics' configuration.

Nothing installed is edited. Each :class:`Patch` replaces one attribute of one Ultralytics module with a wrapper
made by a factory (``original -> replacement``) that lives beside the feature it serves; :func:`apply` is the only
code that assigns to Ultralytics. The start-up hook (:mod:`yolo_mobilevit._startup`) calls :func:`on_import` right
after each module named in :data:`PATCHES` finishes importing, so the plain ``yolo`` CLI, DDP workers and fresh
interpreters are patched without an explicit import. This module imports nothing heavy (it runs at start-up); the
factories import torch and Ultralytics when they are called.

The version policy (:mod:`yolo_mobilevit.versions`, docs/versions.md): on a tested Ultralytics every row applies. On
an untested newer release of the same series each row is checked first (:mod:`yolo_mobilevit.selftest`: the target
exists and takes what its wrapper passes on); all hold: the plugin works, with one warning; one changed: nothing is
patched but :data:`GUARD` and plugin rows fail naming the target. Outside the series only :data:`GUARD` is applied.
Either way stock models keep working.
"""

from __future__ import annotations

import functools
import importlib
import sys

from .errors import YamlRowError

MARKER = "__yolo_mobilevit_original__"  # set on every wrapper: the attribute it replaced
FACTORY = "__yolo_mobilevit_factory__"  # set on every wrapper: the factory that made it (two patches may stack)


class Patch:
    """One replaced Ultralytics attribute: ``module`` (import name), ``attribute`` (``name`` or ``Class.name``),
    ``factory`` (``"package.module:function"``, called with the original, returning the replacement) and why."""

    __slots__ = ("attribute", "factory", "module", "why")

    def __init__(self, module: str, attribute: str, factory: str, why: str) -> None:
        self.module, self.attribute, self.factory, self.why = module, attribute, factory, why

    def __repr__(self) -> str:
        return f"Patch({self.module}:{self.attribute} <- {self.factory})"


_TASKS, _CFG = "ultralytics.nn.tasks", "ultralytics.cfg"
_TRAINER, _DETECT_TRAINER = "ultralytics.engine.trainer", "ultralytics.models.yolo.detect.train"
_DEPTH_CALIBRATE = "ultralytics.models.yolo.depth.calibrate"  # absent before 8.4.104 (no depth task)
_EXPORTER, _EXPORT_ONNX, _EXPORT_OPENVINO, _EXPORT_LITERT = (
    "ultralytics.engine.exporter", "ultralytics.utils.export.onnx", "ultralytics.utils.export.openvino",
    "ultralytics.utils.export.litert")  # fmt: skip
_OV_BACKEND = "ultralytics.nn.backends.openvino"

#: Every patch the plugin makes, in the order they are applied within a module.
PATCHES: tuple[Patch, ...] = (
    Patch(_CFG, "check_cfg", "yolo_mobilevit.integration:make_check_cfg",
          "validate the plugin's training keys (TRAINING_KEYS) where Ultralytics validates its own"),
    Patch(_TASKS, "yaml_model_load", "yolo_mobilevit.task_heads:make_yaml_model_load",
          "refuse a semantic / depth head on an Ultralytics older than its task, naming the first release with it"),
    Patch(_TASKS, "parse_model", "yolo_mobilevit.builder:make_parse_model",
          "build plugin rows with the channels, width scaling and repeats Ultralytics infers for its own rows"),
    Patch(_TASKS, "BaseModel.fuse", "yolo_mobilevit.builder:make_fuse",
          "fold the plugin's conv+BN pairs too (Ultralytics folds only its own conv classes)"),
    Patch(_TASKS, "BaseModel.load", "yolo_mobilevit.checkpoints:make_load",
          "refuse pretrained backbones from another config; adapt RGB stems to 1-channel configs"),
    Patch(_TASKS, "torch_safe_load", "yolo_mobilevit.checkpoints:make_torch_safe_load",
          "name the plugin version a checkpoint needs before unpickling; clear errors for damaged files"),
    Patch(_TASKS, "BaseModel.load", "yolo_mobilevit.pretrained:make_load",
          "pretrained=FILE / .load(FILE): convert a timm, torchvision, cvnets or Mobile-Former checkpoint on the fly"),
    Patch(_TASKS, "torch_safe_load", "yolo_mobilevit.pretrained:make_torch_safe_load",
          "read a reference (non-Ultralytics) checkpoint as weights to convert instead of failing to unpickle it"),
    Patch(_TASKS, "check_yaml", "yolo_mobilevit.configs:make_check_yaml",
          "model YAMLs by bare name from any folder: the shipped configs, after the working directory and Ultralytics'"),
    Patch(_DETECT_TRAINER, "DetectionTrainer.get_dataloader", "yolo_mobilevit.multiscale:make_get_dataloader",
          "variable_batch: give the train loader the variable-batch sampler"),
    Patch(_DETECT_TRAINER, "DetectionTrainer.preprocess_batch", "yolo_mobilevit.multiscale:make_preprocess_batch",
          "variable_batch: resize each batch to its drawn size"),
    Patch(_TRAINER, "BaseTrainer.optimizer_step", "yolo_mobilevit.multiscale:make_optimizer_step",
          "variable_batch: step per accumulated image count, gradient rescaled to it"),
    Patch(_TRAINER, "BaseTrainer.setup_model", "yolo_mobilevit.pretrained:make_setup_model",
          "pretrained=True (the default) on a plugin YAML: load the ImageNet backbone its backbone_weights names"),
    Patch(_TRAINER, "BaseTrainer.build_optimizer", "yolo_mobilevit.finetune:make_build_optimizer",
          "backbone_lr: scale the learning rate of the plugin backbone's parameter groups"),
    Patch(_TRAINER, "BaseTrainer._model_train", "yolo_mobilevit.finetune:make_model_train",
          "freeze_bn: keep the backbone's BatchNorm statistics as loaded (eval mode) every epoch"),
    Patch(_TRAINER, "BaseTrainer.save_model", "yolo_mobilevit.checkpoints:make_save_model",
          "record a SHA-256 of the weights in plugin checkpoints; torch_safe_load verifies it on load"),
    Patch(_DEPTH_CALIBRATE, "calibrate_checkpoint", "yolo_mobilevit.task_heads:make_calibrate_checkpoint",
          "depth: re-record the weights digest after Ultralytics writes its output calibration into best.pt/last.pt"),
    Patch(_EXPORTER, "Exporter.__call__", "yolo_mobilevit.export:make_exporter_call",
          "trace MobileViT blocks for the export asked for: fixed-size without Resize, CoreML iOS15-safe ops"),
    Patch(_EXPORT_ONNX, "onnx_int8_quantize", "yolo_mobilevit.export:make_onnx_int8_quantize",
          "transformer-aware ONNX Runtime INT8: per-channel weights; attention, normalization and head in float"),
    Patch(_EXPORT_OPENVINO, "torch2openvino", "yolo_mobilevit.export:make_torch2openvino",
          "NNCF ModelType.TRANSFORMER INT8 for MobileViT v1/v2 (Mobile-Former measured worse), head in float"),
    Patch(_EXPORT_LITERT, "torch2litert", "yolo_mobilevit.export:make_torch2litert",
          "transformer-aware LiteRT INT8: only weighted ops INT8 (per-channel); attention, normalization, head in float"),
    Patch(_OV_BACKEND, "OpenVINOBackend.load_model", "yolo_mobilevit.export:make_openvino_load",
          "compile plugin OpenVINO exports on the CPU in the precision they were exported in, not bf16 (AMX CPUs)"),
)  # fmt: skip

#: Applied instead of PATCHES when the plugin stands aside (outside the version policy, or a target changed), and on
#: top of them on an untested release, where it runs the self-test of every row at the first plugin row.
GUARD = Patch(_TASKS, "parse_model", "yolo_mobilevit.integration:make_guard",
              "plugin rows fail naming why the plugin stands aside; stock rows build unchanged")  # fmt: skip

#: Training keys the plugin adds: name -> (default, "package.module:validator"). The validator takes the whole
#: config dict and raises ValueError naming the key; Ultralytics' CLI accepts the key because it is in the defaults.
TRAINING_KEYS: dict[str, tuple[object, str]] = {
    "variable_batch": (False, "yolo_mobilevit.multiscale:check_args"),
    "backbone_lr": (1.0, "yolo_mobilevit.finetune:check_args"),
    "freeze_bn": (False, "yolo_mobilevit.finetune:check_args"),
}

WATCHED: frozenset[str] = frozenset(p.module for p in PATCHES)


def _resolve(ref: str) -> object:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _owner(module: object, attribute: str) -> tuple[object, str]:
    *path, name = attribute.split(".")
    for part in path:
        module = getattr(module, part)
    return module, name


def apply(patch: Patch) -> bool:
    """Replace ``patch.attribute`` of the imported ``patch.module`` once (idempotent). Returns whether it changed."""
    try:
        owner, name = _owner(sys.modules[patch.module], patch.attribute)
        original = inspect_static(owner, name)
    except AttributeError:  # not in this Ultralytics release (the feature it serves is absent too)
        return False
    if patch.factory in _factories(original):
        return False
    wrapper = _resolve(patch.factory)(original)
    functools.update_wrapper(wrapper, original)
    setattr(wrapper, MARKER, original)
    setattr(wrapper, FACTORY, patch.factory)
    _assign(owner, name, wrapper)
    return True


def _assign(owner: object, name: str, function: object) -> None:
    """The one assignment to Ultralytics: keeps a ``staticmethod`` a ``staticmethod``."""
    static = isinstance(getattr(owner, "__dict__", {}).get(name), staticmethod)
    setattr(owner, name, staticmethod(function) if static else function)


def _factories(attribute: object) -> list[str]:
    """The factories of the plugin wrappers stacked on ``attribute``, outermost first."""
    found = []
    while hasattr(attribute, MARKER):
        found.append(getattr(attribute, FACTORY, ""))
        attribute = getattr(attribute, MARKER)
    return found


def inspect_static(owner: object, name: str) -> object:
    """The attribute as defined (a plain function for methods, the function inside a staticmethod)."""
    raw = owner.__dict__.get(name, getattr(owner, name)) if isinstance(owner, type) else getattr(owner, name)
    return raw.__func__ if isinstance(raw, staticmethod) else raw


def undo(patch: Patch) -> bool:
    """Put back what ``patch`` wrapped (for tests; patches stacked on one attribute come off outermost first).
    Returns whether ``patch`` was the outermost wrapper."""
    module = sys.modules.get(patch.module)
    if module is None:
        return False
    try:
        owner, name = _owner(module, patch.attribute)
        current = inspect_static(owner, name)
    except AttributeError:  # not in this release: nothing was wrapped
        return False
    if getattr(current, FACTORY, None) != patch.factory:
        return False
    _assign(owner, name, getattr(current, MARKER))
    return True


def is_patched(patch: Patch) -> bool:
    module = sys.modules.get(patch.module)
    try:
        return module is not None and patch.factory in _factories(inspect_static(*_owner(module, patch.attribute)))
    except AttributeError:  # not in this release
        return False


REFUSED = "refused"  # an untested release whose self-test found a changed target (versions.policy names the rest)
_REFUSED: list[str] = []  # what changed, one line per target
_SELF_TESTED: set[str] = set()  # untested versions whose every patched module has been imported and checked
_WARNED: set[str] = set()


def installed_version() -> str:
    return getattr(sys.modules.get("ultralytics"), "__version__", "0")


def state() -> str:
    """The version policy for the imported Ultralytics: ``tested``, ``untested`` (every target checked so far holds),
    ``refused`` (an untested release that changed a target) or ``outside``. Warns once per version (never raises)
    on an untested release and outside the policy."""
    from .versions import OUTSIDE, ULTRALYTICS_MIN, ULTRALYTICS_TESTED, UNTESTED, policy

    version = installed_version()
    current = policy(version)
    if current == UNTESTED and _REFUSED:
        current = REFUSED
    if current in (OUTSIDE, UNTESTED) and version not in _WARNED:
        _WARNED.add(version)
        _warn(
            inactive(current, version)
            if current == OUTSIDE
            else f"ultralytics {version} is newer than the releases it is tested with ({ULTRALYTICS_MIN} to "
            f"{ULTRALYTICS_TESTED}). It checks that every Ultralytics function it patches still has the signature its "
            "wrapper expects before patching it, and stands aside, naming the function, if one changed."
        )
    return current


def _warn(message: str) -> None:
    import warnings

    warnings.warn(f"yolo-mobilevit: {message}", stacklevel=3)


def stand_aside_reason(current: str, version: str) -> str:
    """Why plugin rows cannot build (``outside`` or ``refused``), with what to do."""
    from .versions import ULTRALYTICS_MIN, ULTRALYTICS_REQUIREMENT, ULTRALYTICS_TESTED, describe

    if current == REFUSED:
        return (
            f"ultralytics {version} is untested and changed what the plugin patches: {'; '.join(_REFUSED)}. "
            f"pip install 'ultralytics>={ULTRALYTICS_MIN},<={ULTRALYTICS_TESTED}'"
        )
    return f"it supports {describe()}, and {version} is installed. pip install '{ULTRALYTICS_REQUIREMENT}'"


def inactive(current: str, version: str) -> str:
    return f"inactive (stock models work; plugin rows will not build): {stand_aside_reason(current, version)}"


def stock_target(patch: Patch) -> object:
    """The Ultralytics attribute ``patch`` wraps, under any plugin wrappers (AttributeError when it is absent)."""
    attribute = inspect_static(*_owner(sys.modules[patch.module], patch.attribute))
    while hasattr(attribute, MARKER):
        attribute = getattr(attribute, MARKER)
    return attribute


def refuse(changed: list[str]) -> None:
    """Stand aside on an untested release: put back every attribute the plugin wrapped and the training keys it
    added, warn naming what changed, and guard the model builder."""
    _REFUSED.extend(changed)
    for patch in (GUARD, *reversed(PATCHES)):  # outermost first
        undo(patch)
    remove_training_keys()
    _warn(inactive(REFUSED, installed_version()))
    if GUARD.module in sys.modules:
        apply(GUARD)


def refusal() -> str | None:
    """Why plugin rows cannot build here (None: they can). On an untested release, first imports and checks every
    patched module not imported yet (once), so a changed export helper is found before a model is trained."""
    from .versions import OUTSIDE, UNTESTED

    current, version = state(), installed_version()
    if current == UNTESTED and version not in _SELF_TESTED:
        register()
        current = state()
    return stand_aside_reason(current, version) if current in (REFUSED, OUTSIDE) else None


def make_guard(original: object) -> object:
    """``parse_model`` that raises :class:`YamlRowError` naming :func:`refusal` for a YAML with plugin rows and builds
    every other model exactly as stock Ultralytics builds it."""

    def parse_model(d: dict, ch: int, verbose: bool = True) -> object:
        from .builder import YAML_MODULES

        rows = [r for r in (d.get("backbone") or []) + (d.get("head") or []) if isinstance(r, list) and len(r) > 2]
        plugin = sorted({r[2] for r in rows if isinstance(r[2], str) and r[2] in YAML_MODULES})
        if plugin and (reason := refusal()):
            path = d.get("yaml_file") or "<model dict>"
            raise YamlRowError(f"{path} uses plugin rows {plugin}, but yolo-mobilevit is inactive: {reason}")
        return original(d, ch, verbose)

    return parse_model


def on_import(module_name: str) -> None:
    """Apply the patches of one just-imported Ultralytics module (called by the start-up hook)."""
    from .versions import TESTED, UNTESTED

    if module_name not in WATCHED:
        return
    current = state()
    if current not in (TESTED, UNTESTED):
        if module_name == GUARD.module:
            apply(GUARD)
        return
    rows = [patch for patch in PATCHES if patch.module == module_name]
    if current == UNTESTED:
        from .selftest import signature_problem  # imports inspect: only where the check runs

        if changed := [problem for patch in rows if (problem := signature_problem(patch))]:
            refuse(changed)
            return
    if module_name == _CFG:
        add_training_keys()
    for patch in rows:
        apply(patch)
    if module_name == _TASKS:
        allow_plugin_classes()
        if current == UNTESTED:
            apply(GUARD)  # outermost: checks the rows of modules not imported yet at the first plugin row


_ADDED_KEYS: set[str] = set()


def add_training_keys() -> None:
    """Add :data:`TRAINING_KEYS` to Ultralytics' defaults so the CLI and ``check_dict_alignment`` accept them. A key
    Ultralytics itself defines (a future release) is left alone, with a warning."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER

    for key, (default, _) in TRAINING_KEYS.items():
        if key in _ADDED_KEYS:
            continue
        if key in DEFAULT_CFG_DICT:
            LOGGER.warning(f"ultralytics defines '{key}'; yolo-mobilevit leaves it alone.")
            continue
        DEFAULT_CFG_DICT[key] = default
        setattr(DEFAULT_CFG, key, default)
        _ADDED_KEYS.add(key)


def remove_training_keys() -> None:
    """Take back what :func:`add_training_keys` added (the plugin standing aside)."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT

    for key in sorted(_ADDED_KEYS):
        DEFAULT_CFG_DICT.pop(key, None)
        if hasattr(DEFAULT_CFG, key):
            delattr(DEFAULT_CFG, key)
    _ADDED_KEYS.clear()


def make_check_cfg(original: object) -> object:
    """``check_cfg(cfg, hard)`` that also runs the validator of each plugin key the config sets."""

    def check_cfg(cfg: dict, hard: bool = True) -> None:
        original(cfg, hard)
        for key, (_, validator) in TRAINING_KEYS.items():
            if key in _ADDED_KEYS and key in cfg:
                _resolve(validator)(cfg)

    return check_cfg


def replace_batch_sampler(loader: object, sampler: object) -> None:
    """Give a built train loader another batch sampler. torch's DataLoader forbids assigning ``batch_sampler``
    after construction, and Ultralytics builds its loaders inside the trainer, so this is the one instance-level
    change the plugin makes (for ``variable_batch``)."""
    object.__setattr__(loader, "batch_sampler", sampler)


def allow_plugin_classes() -> None:
    """Let ``torch.load(weights_only=True)`` (Ultralytics' restricted loading) unpickle the plugin's modules."""
    import torch

    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(safe_classes())


def safe_classes() -> list[type]:
    """Every ``nn.Module`` class the plugin defines (what a plugin checkpoint may reference)."""
    from torch import nn

    from . import modules

    prefix = f"{modules.__name__}."
    return [
        obj
        for name, module in list(sys.modules.items())
        if name.startswith(prefix)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == name
    ]


__all__ = ["GUARD", "PATCHES", "TRAINING_KEYS", "Patch", "YamlRowError", "apply", "on_import", "register", "undo"]


def register() -> None:
    """Import every patched Ultralytics module now and patch it (the start-up hook does so as each is imported;
    modules imported before the plugin are patched here). Idempotent."""
    for name in sorted(WATCHED, key=lambda m: (m != _TASKS, m)):  # the model builder first: it imports ultralytics
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name.startswith(f"{e.name}.") or e.name == name:  # the module itself is absent, not what it imports
                absent_module(name)
                continue
            raise
        on_import(name)
    _SELF_TESTED.add(installed_version())


def absent_module(name: str) -> None:
    """A patched module this release does not have: not applicable on a tested release (older 8.4 releases lack the
    export helpers), a changed target on an untested one."""
    from .versions import UNTESTED

    if state() == UNTESTED:
        refuse([f"{name} no longer exists"])


def table() -> str:
    """The patch table as text (``yolo-mobilevit doctor`` prints it)."""
    return "\n".join(f"{p.module}:{p.attribute}  <-  {p.factory}\n    {p.why}" for p in PATCHES)
