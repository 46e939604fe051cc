"""Everything the plugin changes in objects it does not own, Ultralytics' above all, as two tables: :data:`PATCHES`,
every replaced Ultralytics attribute, applied by the one helper :func:`apply`; and :data:`RUNTIME_CHANGES`, every
other lasting change (attributes the plugin sets on models, trainers, datasets and loaders during a run, the training
keys it adds to Ultralytics' defaults, process-wide swaps during one call, the start-up hook), each made by the
function its row names. Also here: the training keys (:data:`TRAINING_KEYS`) and the version policy's state.

Nothing installed is edited. Each :class:`Patch` replaces one attribute of one Ultralytics module with one wrapper; a
row appears once per (module, attribute). The wrapper is built from the row's steps, factories
(``original -> replacement``) that live beside the feature they serve, composed in the order the row lists them: the
first is outermost, runs first and decides whether the next one runs. The start-up hook
(:mod:`yolo_mobilevit._startup`) calls :func:`on_import` right after each module named in :data:`PATCHES` finishes
importing, so the plain ``yolo`` CLI, DDP workers and fresh interpreters are patched without an explicit import. This
module imports nothing heavy (it runs at start-up); the factories import torch and Ultralytics when they are called.

The version policy (:mod:`yolo_mobilevit.versions`, docs/versions.md): on a tested Ultralytics every row applies. On
an untested newer release of the same series each row is checked first (:func:`self_test`: the target exists and takes
what each of its steps passes on); all hold: the plugin works, with one warning, and :data:`GUARD` wraps the patched
``parse_model`` once more, to run the checks of modules imported later; one changed: nothing is patched but
:data:`GUARD` and plugin rows fail naming the target. Outside the series only :data:`GUARD` is applied. Either way
stock models keep working.
"""

from __future__ import annotations

import functools
import importlib
import sys

from .errors import YamlRowError

MARKER = "__yolo_mobilevit_original__"  # set on every wrapper: the attribute it replaced
FACTORY = "__yolo_mobilevit_factory__"  # set on every wrapper: its row's steps (GUARD stacks on parse_model's)


class Patch:
    """One replaced Ultralytics attribute: ``module`` (import name), ``attribute`` (``name`` or ``Class.name``),
    ``steps`` and why. A step is a factory, ``"package.module:function"``, called with what it wraps and returning
    its replacement; one step or several (a tuple, composed into one wrapper: the first listed is outermost)."""

    __slots__ = ("attribute", "module", "steps", "why")

    def __init__(self, module: str, attribute: str, steps: str | tuple[str, ...], why: str) -> None:
        self.module, self.attribute, self.why = module, attribute, why
        self.steps: tuple[str, ...] = (steps,) if isinstance(steps, str) else tuple(steps)

    @property
    def factory(self) -> str:
        """The row's steps as one name, outermost first (what its wrapper records): ``a:f`` or ``a:f > b:g``."""
        return " > ".join(self.steps)

    def __repr__(self) -> str:
        return f"Patch({self.module}:{self.attribute} <- {self.factory})"


class RuntimeChange:
    """A lasting change to an object the plugin does not own, made while it runs rather than by a patch row:
    ``owner`` (the object), ``attribute`` (what changes on it), ``where`` (the ``module:function`` of this package
    that makes it), ``lasts`` (``call``: restored when that call returns; ``run``: for the life of the object, a
    training run or a built model; ``process``: from then on) and why."""

    __slots__ = ("attribute", "lasts", "owner", "where", "why")

    def __init__(self, owner: str, attribute: str, where: str, lasts: str, why: str) -> None:
        if lasts not in LASTS:
            raise ValueError(f"RuntimeChange({owner}.{attribute}): lasts={lasts!r}, expected one of {LASTS}")
        self.owner, self.attribute, self.lasts, self.why = owner, attribute, lasts, why
        self.where = f"{__package__}.{where}"  # yolo_mobilevit.module:function

    def __repr__(self) -> str:
        return f"RuntimeChange({self.owner}.{self.attribute} by {self.where})"


LASTS = ("call", "run", "process")


_TASKS, _CFG = "ultralytics.nn.tasks", "ultralytics.cfg"
_TRAINER, _DETECT_TRAINER = "ultralytics.engine.trainer", "ultralytics.models.yolo.detect.train"
_DEPTH_CALIBRATE = "ultralytics.models.yolo.depth.calibrate"  # absent before 8.4.104 (no depth task)
_EXPORTER, _EXPORT_ONNX, _EXPORT_OPENVINO, _EXPORT_LITERT = (
    "ultralytics.engine.exporter", "ultralytics.utils.export.onnx", "ultralytics.utils.export.openvino",
    "ultralytics.utils.export.litert")  # fmt: skip
_OV_BACKEND = "ultralytics.nn.backends.openvino"

#: Every patch the plugin makes, one row per (module, attribute), in the order they are applied within a module.
PATCHES: tuple[Patch, ...] = (
    Patch(_CFG, "check_cfg", "yolo_mobilevit.integration:make_check_cfg",
          "validate the plugin's training keys (TRAINING_KEYS) where Ultralytics validates its own"),
    Patch(_TASKS, "yaml_model_load", "yolo_mobilevit.task_heads:make_yaml_model_load",
          "refuse a semantic / depth head on an Ultralytics older than its task, naming the first release with it"),
    Patch(_TASKS, "parse_model", "yolo_mobilevit.builder:make_parse_model",
          "build plugin rows with the channels, width scaling and repeats Ultralytics infers for its own rows"),
    Patch(_TASKS, "BaseModel.fuse", "yolo_mobilevit.builder:make_fuse",
          "fold the plugin's conv+BN pairs too (Ultralytics folds only its own conv classes)"),
    Patch(_TASKS, "BaseModel.load", ("yolo_mobilevit.pretrained:make_load", "yolo_mobilevit.checkpoints:make_load"),
          "1. pretrained=FILE / .load(FILE) of a timm, torchvision, cvnets or Mobile-Former checkpoint: converted "
          "and loaded, step 2 skipped; 2. any other weights: refuse backbones from another config, adapt RGB stems "
          "to 1-channel configs, then Ultralytics' transfer"),
    Patch(_TASKS, "torch_safe_load",
          ("yolo_mobilevit.pretrained:make_torch_safe_load", "yolo_mobilevit.checkpoints:make_torch_safe_load"),
          "1. a reference (non-Ultralytics) checkpoint: read as weights to convert, step 2 skipped; 2. any other: "
          "refuse damaged files and name the plugin version a checkpoint needs before unpickling, verify its digest"),
    Patch(_TASKS, "check_yaml", "yolo_mobilevit.configs:make_check_yaml",
          "model YAMLs by bare name from any folder: the shipped configs, after the working directory and Ultralytics'"),
    Patch(_DETECT_TRAINER, "DetectionTrainer.get_dataloader", "yolo_mobilevit.variable_batch:make_get_dataloader",
          "variable_batch: give the train loader the variable-batch sampler"),
    Patch(_DETECT_TRAINER, "DetectionTrainer.preprocess_batch", "yolo_mobilevit.variable_batch:make_preprocess_batch",
          "variable_batch: resize each batch to its drawn size"),
    Patch(_TRAINER, "BaseTrainer.optimizer_step", "yolo_mobilevit.variable_batch:make_optimizer_step",
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

#: Every lasting change the plugin makes to objects it does not own other than by a PATCHES row: attributes set on
#: Ultralytics' models, trainers, datasets and loaders during a run, its defaults, and process-wide swaps. ``where``
#: is relative to the package. tests/test_runtime_changes.py finds every such change in the package's code and
#: checks that it is a row here.
RUNTIME_CHANGES: tuple[RuntimeChange, ...] = (
    RuntimeChange("ultralytics.utils.DEFAULT_CFG(_DICT)", "TRAINING_KEYS", "integration:add_training_keys", "process",
                  "Ultralytics' CLI and check_dict_alignment accept them (remove_training_keys: standing aside)"),
    RuntimeChange("torch.serialization", "add_safe_globals allow-list", "integration:allow_plugin_classes", "process",
                  "torch.load(weights_only=True), Ultralytics' restricted loading, may unpickle plugin modules"),
    RuntimeChange("sys", "meta_path", "_startup:install_hook", "process",
                  "the start-up import hook: patches each watched Ultralytics module as it finishes importing"),
    RuntimeChange("a watched Ultralytics module's spec", "loader", "_startup:PatchOnImport.find_spec", "process",
                  "runs the module, then applies its PATCHES rows (the import hook's one job)"),
    RuntimeChange("sys", "excepthook", "errors:install_excepthook", "process",
                  "on the command line (yolo, yolo-mobilevit) a YamlRowError prints without its traceback"),
    RuntimeChange("sys", "stdout", "cli:main", "process",
                  "output piped into head and the like: None as the command ends, so it exits quietly"),
    RuntimeChange("a built model's layer list (model.model)", "yolo_mobilevit_version", "checkpoints:stamp", "run",
                  "the plugin version, pickled into every checkpoint: a later install names the one it needs"),
    RuntimeChange("a built model's layer list (model.model)", "yolo_mobilevit_features", "layer_info:record", "run",
                  "what each backbone row emits (feature_info), pickled into every checkpoint"),
    RuntimeChange("the trainer's EMA layer list", "yolo_mobilevit_digest", "checkpoints:make_save_model", "call",
                  "the weights' SHA-256 while save_model copies the EMA into last.pt / best.pt, removed after"),
    RuntimeChange("a loaded checkpoint's models", "yolo_mobilevit_digest", "checkpoints:verify_digest", "run",
                  "dropped once verified, so a model edited after loading carries no stale digest"),
    RuntimeChange("a saved depth checkpoint's models", "yolo_mobilevit_digest", "task_heads:make_calibrate_checkpoint",
                  "run", "re-recorded after Ultralytics writes its output calibration into the file"),
    RuntimeChange("ultralytics.nn.tasks.LOGGER", "addFilter / removeFilter", "builder:make_parse_model", "call",
                  "holds parse_model's table while it builds stand-in rows, then prints it with the real modules"),
    RuntimeChange("the trainer (BaseTrainer)", "accumulate", "variable_batch:_Run.on_batch", "run",
                  "variable_batch: 1, optimizer_step is called every batch (the patched step counts images)"),
    RuntimeChange("the trainer (BaseTrainer)", "_variable_batch_run", "variable_batch:attach", "run",
                  "variable_batch: the run's sampler, step gate and epoch record"),
    RuntimeChange("the trainer (BaseTrainer)", "callbacks", "variable_batch:attach", "run",
                  "variable_batch: on_train_epoch_start starts the epoch's schedule, on_train_epoch_end logs it"),
    RuntimeChange("the train dataset (YOLODataset)", "__getitems__", "variable_batch:attach", "run",
                  "variable_batch: each sample carries its batch's drawn size, in loader workers too"),
    RuntimeChange("the train loader (InfiniteDataLoader)", "batch_sampler", "variable_batch:attach", "run",
                  "variable_batch: the variable-batch sampler (torch forbids assigning it after construction)"),
    RuntimeChange("the train loader (InfiniteDataLoader)", "reset", "variable_batch:attach", "run",
                  "variable_batch: a reset iterator starts at the trainer's epoch (resume, NaN recovery)"),
    RuntimeChange("ai_edge_quantizer.quantizer", "Quantizer", "export:make_torch2litert", "call",
                  "tflite INT8 with attention: a subclass adds the transformer-aware recipe (process-wide)"),
    RuntimeChange("openvino", "Core", "export:openvino_export_precision", "call",
                  "loading a plugin export: compile_model adds its recorded precision (process-wide)"),
    RuntimeChange("socket", "setdefaulttimeout", "convert.source:_load_name", "call",
                  "a download by model name (timm, torchvision) fails within HTTP_TIMEOUT instead of hanging"),
)  # fmt: skip

VARIABLE_BATCH, BACKBONE_LR, FREEZE_BN = "variable_batch", "backbone_lr", "freeze_bn"
#: Training keys the plugin adds, the one declaration of their names and defaults: name -> (default,
#: "package.module:validator"). The validator takes the whole config dict and raises ValueError naming the key;
#: Ultralytics' CLI accepts the key because it is in the defaults. The features read their key's name from here.
TRAINING_KEYS: dict[str, tuple[object, str]] = {
    VARIABLE_BATCH: (False, "yolo_mobilevit.variable_batch:check_args"),
    BACKBONE_LR: (1.0, "yolo_mobilevit.finetune:check_args"),
    FREEZE_BN: (False, "yolo_mobilevit.finetune:check_args"),
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
    """Replace ``patch.attribute`` of the imported ``patch.module`` once (idempotent) by the wrapper its steps
    compose. Returns whether it changed."""
    try:
        owner, name = _owner(sys.modules[patch.module], patch.attribute)
        original = inspect_static(owner, name)
    except AttributeError:  # not in this Ultralytics release (the feature it serves is absent too)
        return False
    if patch.factory in _factories(original):
        return False
    wrapper = original
    for step in reversed(patch.steps):  # the first step ends up outermost
        wrapper = _resolve(step)(wrapper)
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
    """The rows (their :attr:`Patch.factory`) of the plugin wrappers stacked on ``attribute``, outermost first."""
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
    """Put back what ``patch`` wrapped (for tests; a patch stacked on another, GUARD on parse_model, comes off first).
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


def self_test(patch: Patch) -> str | None:
    """None when the imported ``patch.module`` still has ``patch.attribute`` and it takes every argument each of the
    row's steps passes on (:func:`yolo_mobilevit.selftest.signature_problem`); else what changed, naming the target."""
    from .selftest import signature_problem  # imports inspect: only where the check runs

    target = f"{patch.module}:{patch.attribute}"
    try:
        original = stock_target(patch)
    except AttributeError:
        return f"{target} no longer exists"
    return next(
        (p for step in patch.steps if (p := signature_problem(target, original, _resolve(step)(original)))), None
    )


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
    if current == UNTESTED and (changed := [problem for patch in rows if (problem := self_test(patch))]):
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


__all__ = [
    "GUARD",
    "PATCHES",
    "RUNTIME_CHANGES",
    "TRAINING_KEYS",
    "Patch",
    "RuntimeChange",
    "YamlRowError",
    "apply",
    "on_import",
    "register",
    "undo",
]


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
