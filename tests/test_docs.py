"""The documentation holds: the mkdocs site builds with ``--strict``; every relative link of README.md and docs/*.md
resolves (file and ``#anchor``); every config, repository path, ``yolo-mobilevit`` subcommand, YAML module and patched
Ultralytics attribute the docs name exists; and no committed text file names an absolute path of this machine."""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify
from mkdocs.commands.build import build
from mkdocs.config import load_config

from yolo_mobilevit.cli import main as cli_main
from yolo_mobilevit.integration import PATCHES, RUNTIME_CHANGES, Patch, RuntimeChange
from yolo_mobilevit.modules import YAML_MODULES

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
# the top-level folders whose paths the docs name as repository paths (`benchmarks/...`, `cfg/...`)
TOP = ("benchmarks", "cfg", "docs", "examples", "tests", "yolo_mobilevit", ".ci")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
# a repository path as written: globs (`cfg/yolo26-*.yaml`), brace lists and `<placeholders>` allowed
_TOP = "|".join(re.escape(t) for t in TOP)
REPO_PATH = re.compile(rf"(?<![\w./-])(?:\.\./)*((?:{_TOP})/[\w.*{{}},/<>-]*[\w*}}>])")
CONFIG = re.compile(r"(?<![\w./-])(yolo(?:v\d+|\d+)[\w.{},-]*?\.yaml)\b")
SUBCOMMAND = re.compile(r"(?<![\w/-])yolo-mobilevit ([a-z][\w-]*)")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def expand_braces(name: str) -> list[str]:
    """``a-{x,y}.yaml`` -> ``["a-x.yaml", "a-y.yaml"]`` (shell brace expansion, any number of groups)."""
    parts = re.split(r"\{([^{}]*)\}", name)
    options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(choice) for choice in itertools.product(*options)]


@cache
def anchors(page: Path) -> frozenset[str]:
    """The heading ids mkdocs (Python-Markdown's toc) gives a page's headings; duplicates get ``_1``, ``_2``..."""
    ids: list[str] = []
    for line in CODE_BLOCK.sub("", text(page)).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*$", line):
            slug = slugify(re.sub(r"[`*]", "", m[1]), "-")
            n = sum(1 for i in ids if i == slug or re.fullmatch(re.escape(slug) + r"_\d+", i))
            ids.append(slug if n == 0 else f"{slug}_{n}")
    return frozenset(ids)


def test_mkdocs_builds_strict(tmp_path):
    config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True)
    build(config)  # strict: any warning (a broken page link or anchor, a page missing from the nav) raises
    assert (tmp_path / "site" / "index.html").is_file()
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    listed = {p for entry in nav for p in entry.values()}
    assert listed == {p.name for p in DOCS.glob("*.md")}, "every page in docs/ is in the nav, and only those"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path):
    body = CODE_BLOCK.sub("", text(page))
    broken = []
    for target in LINK.findall(body):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {rel(dest)}")
        elif not dest.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{rel(page)}: " + "; ".join(broken)


def path_exists(written: str) -> bool:
    """A repository path as the docs write it exists: every brace alternative; a glob or ``<placeholder>`` matches at
    least one file; ``cfg/`` configs with Ultralytics' scale letter (``cfg/yolov8n-mobilevit.yaml``); an output prefix
    (``--out benchmarks/results/NAME``) that files ``NAME.*`` exist for."""
    for name in expand_braces(re.sub(r"<[^<>]*>", "*", written)):
        if name.startswith("cfg/") and name.endswith(".yaml"):
            name = "cfg/" + re.sub(r"^(yolo(?:v\d+|\d+))[nslmx](?=[-.])", r"\1", name.removeprefix("cfg/"))
        if not (glob.glob(str(REPO / name)) or glob.glob(str(REPO / name) + ".*")):
            return False
    return True


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_repository_paths_exist(page: Path):
    missing = sorted({written for written in REPO_PATH.findall(text(page)) if not path_exists(written)})
    assert not missing, f"{rel(page)} names repository paths that do not exist: {missing}"


@cache
def stock_configs() -> frozenset[str]:
    """Every model YAML Ultralytics ships, by file name (unlettered: ``yolov8.yaml``, ``yolo26-seg.yaml``...)."""
    import ultralytics

    return frozenset(p.name for p in (Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))


def config_exists(name: str) -> bool:
    """A config as the docs write it: ``cfg/NAME`` or a bare name, with Ultralytics' scale letter mapping
    (``yolov8n-mobilevit.yaml`` -> ``cfg/yolov8-mobilevit.yaml``, ``yolo26s.yaml`` -> Ultralytics' ``yolo26.yaml``)."""
    bare = name.removeprefix("cfg/")
    unlettered = re.sub(r"^(yolo(?:v\d+|\d+))[nslmx](?=[-.])", r"\1", bare)
    if name.startswith("cfg/"):
        return (REPO / name).is_file() or (REPO / "cfg" / unlettered).is_file()
    return (REPO / "cfg" / unlettered).is_file() or unlettered in stock_configs() or bare in stock_configs()


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_configs_exist(page: Path):
    written = {m for m in CONFIG.findall(text(page)) if "..." not in m}
    names = {n for w in written for n in expand_braces(w)}
    missing = sorted(n for n in names if not config_exists(n))
    assert not missing, f"{rel(page)} names configs that are neither in cfg/ nor shipped by Ultralytics: {missing}"


def test_config_name_mapping_is_checked():
    """The check above refuses what does not exist, with and without a scale letter."""
    assert config_exists("yolov8n-mobilevit.yaml") and config_exists("cfg/yolov8-mobilevit.yaml")
    assert config_exists("yolo26s-mobilenetv3-large-seg.yaml") and config_exists("yolo26n.yaml")
    assert not config_exists("yolov8n-mobilevit-xl.yaml") and not config_exists("cfg/yolov8n-nothing.yaml")
    assert path_exists("cfg/yolo26n-*.yaml") and path_exists("cfg/yolov8-mobileformer-<width>.yaml")
    assert not path_exists("cfg/yolo26n-nothing-*.yaml") and not path_exists("benchmarks/results/{model_table,x}.md")
    assert expand_braces("a-{x,y}-{1,2}.yaml") == ["a-x-1.yaml", "a-x-2.yaml", "a-y-1.yaml", "a-y-2.yaml"]


@cache
def is_subcommand(name: str) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli_main([name, "--help"])
    except SystemExit as e:
        return e.code == 0
    return False


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_subcommands_exist(page: Path):
    named = set(SUBCOMMAND.findall(text(page)))
    assert not {n for n in named if not is_subcommand(n)}, f"{rel(page)}: unknown yolo-mobilevit subcommands"


def test_every_yaml_module_is_documented():
    """docs/configs.md has a row per registered YAML module, with the signature `yolo-mobilevit modules` prints."""
    page = text(DOCS / "configs.md")
    for name, cls in YAML_MODULES.items():
        assert f"| `{name}` | `{cls.signature()}` |" in page, f"docs/configs.md: no row for {name} {cls.signature()}"


def patch_row(p: Patch) -> str:
    """A row of docs/architecture.md's patch table: module, attribute, the steps' modules outermost first, why."""
    steps = " > ".join(f"`{step.split(':')[0].rsplit('.', 1)[-1]}`" for step in p.steps)
    return f"| `{p.module}` | `{p.attribute}` | {steps} | {p.why} |"


def runtime_row(c: RuntimeChange) -> str:
    """A row of docs/architecture.md's run-time changes table: owner, attribute, where, how long, why."""
    return f"| {c.owner} | `{c.attribute}` | `{c.where.removeprefix('yolo_mobilevit.')}` | {c.lasts} | {c.why} |"


def _table(page: str, header: str) -> list[str]:
    start = page.index(f"{header}\n") + len(header) + 1
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), page[start:].splitlines()))
    return rows[1:]  # below the |---| line


def test_patch_table_matches_integration():
    """docs/architecture.md lists every row of integration.PATCHES, in order (module, attribute, steps, why)."""
    rows = _table(
        text(DOCS / "architecture.md"), "| Ultralytics module | attribute | steps in (outermost first) | why |"
    )
    assert rows == [patch_row(p) for p in PATCHES], "docs/architecture.md: the patch table differs from the code"


def test_runtime_change_table_matches_integration():
    """docs/architecture.md lists every row of integration.RUNTIME_CHANGES, in order, next to the patch table."""
    rows = _table(text(DOCS / "architecture.md"), "| changed object | attribute | where | lasts | why |")
    assert rows == [runtime_row(c) for c in RUNTIME_CHANGES], "docs/architecture.md: the run-time table differs"


def test_readme_is_for_users():
    readme = text(REPO / "README.md")
    assert len(readme.splitlines()) < 300
    for command in ("bash examples/quickstart.sh", ".venv/bin/python -m pytest"):  # what .ci/run calls
        assert f"    {command}\n" in readme
        assert command in text(REPO / ".ci" / "run")


def machine_roots() -> list[str]:
    """The folders a committed file must not name: the repository's parent and, in a linked git worktree, the main
    worktree's parent (both are where this machine keeps checkouts, datasets and run folders)."""
    roots = {REPO.parent}
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if common.returncode == 0:
        roots.add(Path(common.stdout.strip()).parent.parent)
    return sorted(str(r) + "/" for r in roots if r != Path(r.anchor))


def test_no_committed_file_names_a_machine_path():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    roots = [r.encode() for r in machine_roots()]
    assert roots, "the repository sits directly under the file-system root: nothing to check against"
    found = []
    for name in filter(None, files.split(b"\0")):
        path = REPO / name.decode()
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192] and path.suffix != ".pt":  # binary, except checkpoints (pickled strings)
            continue
        found += [f"{name.decode()}: {root.decode()}" for root in roots if root in data]
    assert not found, f"committed files name absolute paths of this machine: {found}"
