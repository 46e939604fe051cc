"""The inventory of changes to Ultralytics: one PATCHES row per (module, attribute), and every other lasting change
the package makes to an object it does not own is a row of ``integration.RUNTIME_CHANGES``.

The change sites are found in the source (``ast``): assignments to an attribute of anything but ``self`` / ``cls``
(``trainer.accumulate = ...``), ``setattr`` / ``delattr`` / ``object.__setattr__``, and the mutating calls the
package uses on others' objects (``add_callback``, ``addFilter``, ``add_safe_globals``, ``setdefaulttimeout``,
``sys.meta_path.insert``). A site is named by its top-level function or ``Class.method`` (nested functions belong
to the function that defines them). Each must be the ``where`` of a run-time change row, the patch table's own
helper (or what takes a row back), or listed below as a change to an object the plugin made itself. ``tools/`` is
left out: those are programs that drive Ultralytics through its public API on models they create, not the plugin
acting inside a user's run.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

import yolo_mobilevit
from yolo_mobilevit import integration
from yolo_mobilevit.integration import LASTS, PATCHES, RUNTIME_CHANGES

PACKAGE = Path(yolo_mobilevit.__file__).parent
P = "yolo_mobilevit."
MUTATING_CALLS = frozenset({"add_callback", "addFilter", "add_safe_globals", "setdefaulttimeout"})

#: The patch table's helper, the one code that assigns PATCHES' wrappers (and marks them), and what takes a run-time
#: change back (the plugin standing aside on an untested release).
PATCH_MECHANISM = frozenset(
    {f"{P}integration:apply", f"{P}integration:_assign", f"{P}integration:remove_training_keys"}
)

#: Sites that change objects the plugin itself made, with why they are not a change to Ultralytics.
OWN_OBJECTS = {
    f"{P}builder:_build": "the plugin module built for a row gets the attributes Ultralytics gives its layers",
    f"{P}builder:_plan": "the builder's own plan of each row",
    f"{P}builder:_reprint": "log records parse_model emitted while held, rewritten before they are printed once",
    f"{P}builder:measured_maps": "restores the training flags it set for one probing forward pass",
    f"{P}builder:make_parse_model": "nchw_out on the plugin's own modules (the logger filter is a row)",
    f"{P}checkpoints:gray_stem_copy": "a deep copy of the checkpoint's model, made to be adapted",
    f"{P}convert.core:convert_checkpoint": "the model conversion builds and its own report",
    f"{P}convert.core:load_converted": "its own conversion report",
    f"{P}convert.mobilenet:make_mapper": "the name of a mapping function it defines",
    f"{P}convert.mobilevit:_mapper": "the name of a mapping function it defines",
    f"{P}convert.mobilevit:_cvnets_mapper": "the name of a mapping function it defines",
    f"{P}families:FamilySpec.__post_init__": "a frozen spec filling its own default group",
    f"{P}errors:install_excepthook": "marks its own hook function (replacing sys.excepthook is a row)",
    f"{P}layer_info:record": "a holder module made to describe the layer list (the record itself is a row)",
    f"{P}variable_batch:VariableBatchSampler.__iter__": "the batch index lists its own sampler yields",
    f"{P}variable_batch:make_optimizer_step": "the step count of its own run record",
}


def site_name(module: str, stack: list[ast.AST]) -> str:
    names = []
    for node in stack:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
            if not isinstance(node, ast.ClassDef):
                break
    return f"{module}:{'.'.join(names) or '<module>'}"


def _base(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _is_change(node: ast.AST) -> bool:
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        return any(
            isinstance(t, ast.Attribute) and not (isinstance(_base(t), ast.Name) and _base(t).id in {"self", "cls"})
            for t in flat
        )
    if isinstance(node, ast.Call):
        text = ast.unparse(node.func)
        if text in {"setattr", "delattr", "object.__setattr__"} or text.startswith("sys.meta_path."):
            return True
        return isinstance(node.func, ast.Attribute) and node.func.attr in MUTATING_CALLS
    return False


def change_sites() -> dict[str, list[str]]:
    """``{site: [line: code, ...]}`` for every change site of the package outside ``tools/``."""
    sites: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "tools":
            continue
        parts = [*relative.with_suffix("").parts]
        module = ".".join([yolo_mobilevit.__name__, *(parts[:-1] if parts[-1] == "__init__" else parts)])

        def walk(node: ast.AST, stack: list[ast.AST], module: str = module) -> None:
            if _is_change(node):
                sites.setdefault(site_name(module, stack), []).append(f"{node.lineno}: {ast.unparse(node)[:80]}")
            for child in ast.iter_child_nodes(node):
                walk(child, [*stack, node] if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else stack)

        walk(ast.parse(path.read_text(), str(path)), [])
    return sites


def _resolve_site(site: str) -> object:
    module, _, qualname = site.partition(":")
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def test_each_module_attribute_pair_is_patched_once():
    pairs = [(p.module, p.attribute) for p in PATCHES]
    assert len(pairs) == len(set(pairs)), sorted({pair for pair in pairs if pairs.count(pair) > 1})


def test_the_scanner_finds_the_known_changes():
    """The scanner sees the changes the issue named (so an empty scan cannot pass)."""
    sites = change_sites()
    assert any("trainer.accumulate" in line for line in sites[f"{P}variable_batch:_Run.on_batch"])
    attach = " ".join(sites[f"{P}variable_batch:attach"])
    assert "__getitems__" in attach and "loader.reset" in attach and "batch_sampler" in attach
    assert any("quantizer.Quantizer" in line for line in sites[f"{P}export:make_torch2litert"])
    assert any("DEFAULT_CFG" in line for line in sites[f"{P}integration:add_training_keys"])


def test_every_change_site_is_in_an_inventory():
    covered = {row.where for row in RUNTIME_CHANGES} | PATCH_MECHANISM | set(OWN_OBJECTS)
    unlisted = {site: lines for site, lines in change_sites().items() if site not in covered}
    assert not unlisted, (
        "changes to objects the plugin does not own must be rows of integration.RUNTIME_CHANGES (or, for its own "
        f"objects, of OWN_OBJECTS here): {unlisted}"
    )


def test_every_listed_site_exists_and_makes_a_change():
    sites = change_sites()
    for site in [row.where for row in RUNTIME_CHANGES] + sorted(PATCH_MECHANISM | set(OWN_OBJECTS)):
        assert callable(_resolve_site(site)), site
        assert site in sites, f"{site} is listed but makes no change the scanner sees: remove or fix the row"


@pytest.mark.parametrize("row", RUNTIME_CHANGES, ids=repr)
def test_runtime_change_rows_name_their_code(row):
    assert row.owner and row.why and row.lasts in LASTS, row
    token = row.attribute.split()[0].strip(",`")
    source = Path(importlib.import_module(row.where.partition(":")[0]).__file__).read_text()
    constants = {  # the package's names for the token (task_heads writes checkpoints.DIGEST_KEY)
        name
        for module_name, module in list(sys.modules.items())
        if module_name.startswith(P)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value == token
    }
    named = token in source or any(re.search(rf"\b{name}\b", source) for name in constants)
    assert named, f"{row}: {token!r} appears nowhere in the module its row names"


def test_runtime_change_refuses_an_unknown_lifetime():
    with pytest.raises(ValueError, match="lasts='forever'"):
        integration.RuntimeChange("trainer", "x", "variable_batch:attach", "forever", "why")
