"""Shipped configs by bare name from any folder (as Ultralytics resolves ``yolov8n.yaml``), ``yolo-mobilevit cfg``,
and a package that reads nothing of the repository around it. Runs on the oldest supported Ultralytics too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import CFG
from ultralytics.nn.tasks import guess_model_task, yaml_model_load

from yolo_mobilevit import cli, configs
from yolo_mobilevit.integration import PATCHES, is_patched

PACKAGE = Path(configs.__file__).parent


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(config: dict) -> list:
    return config["backbone"] + config["head"]


@pytest.mark.parametrize(
    ("name", "file", "scale", "task"),
    [
        ("yolov8s-mobilevit.yaml", "yolov8-mobilevit.yaml", "s", "detect"),  # scale letter
        ("yolov8-mobilevit.yaml", "yolov8-mobilevit.yaml", "", "detect"),  # the file's own name
        ("yolo26n-mobilevit-xxs.yaml", "yolo26-mobilevit-xxs.yaml", "n", "detect"),  # YOLO26, letter, variant
        ("yolov8n-mobilevitv2-seg.yaml", "yolov8-mobilevitv2-seg.yaml", "n", "segment"),  # task suffixes
        ("yolo26s-mobilenetv3-large-pose.yaml", "yolo26-mobilenetv3-large-pose.yaml", "s", "pose"),
        ("yolov8n-mobilenetv2-obb.yaml", "yolov8-mobilenetv2-obb.yaml", "n", "obb"),
        ("yolo26n-mobilevit-cls.yaml", "yolo26-mobilevit-cls.yaml", "n", "classify"),
        ("yolov8-mobileformer-151m.yaml", "yolov8-mobileformer-151m.yaml", "", "detect"),  # digits + m, no letter
    ],
)
def test_bare_name_resolves_from_an_empty_folder(empty_cwd: Path, name: str, file: str, scale: str, task: str):
    loaded = yaml_model_load(name)
    shipped = yaml.safe_load((CFG / file).read_text())
    assert rows(loaded) == rows(shipped)
    assert loaded["scale"] == scale
    assert guess_model_task(loaded) == task


def test_every_shipped_config_resolves_by_name(empty_cwd: Path):
    """Resolution globs the folder: every file in cfg/ (and any added later) resolves with no list to update."""
    from ultralytics.nn.tasks import check_yaml

    names = sorted(p.name for p in CFG.glob("*.yaml"))
    assert len(names) > 50
    assert [Path(check_yaml(n)).resolve() for n in names] == [(CFG / n).resolve() for n in names]


def test_a_new_config_in_the_folder_resolves_without_code_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder, cwd = tmp_path / "cfg", tmp_path / "cwd"
    folder.mkdir(), cwd.mkdir()
    (folder / "yolo26-mobilevit-new.yaml").write_text((CFG / "yolo26-mobilevit-xxs.yaml").read_text())
    monkeypatch.setattr(configs, "config_dir", lambda: folder)
    monkeypatch.chdir(cwd)
    assert yaml_model_load("yolo26s-mobilevit-new.yaml")["scale"] == "s"


@pytest.mark.parametrize("name", ["yolov8-mobilevit.yaml", "yolov8s-mobilevit.yaml"])
def test_a_file_in_the_working_directory_wins(empty_cwd: Path, name: str):
    """As in Ultralytics: the working directory's yolov8-mobilevit.yaml wins over the shipped one, also for the
    lettered name (Ultralytics strips the letter and finds it there)."""
    mine = yaml.safe_load((CFG / "yolov8-mobilevit.yaml").read_text()) | {"nc": 3}
    (empty_cwd / "yolov8-mobilevit.yaml").write_text(yaml.safe_dump(mine))
    assert yaml_model_load(name)["nc"] == 3
    assert yaml_model_load("yolov8-mobilevit-s.yaml")["nc"] == 80  # other names: still the shipped files


def test_an_unknown_name_still_gets_ultralytics_error(empty_cwd: Path):
    with pytest.raises(FileNotFoundError, match=r"'yolov8n?-mobilevitt\.yaml' does not exist"):
        yaml_model_load("yolov8n-mobilevitt.yaml")


def test_resolution_is_a_row_of_the_patch_table():
    row = next(p for p in PATCHES if p.attribute == "check_yaml")
    assert (row.module, row.factory) == ("ultralytics.nn.tasks", "yolo_mobilevit.configs:make_check_yaml")
    assert is_patched(row)


def test_cfg_lists_every_config_at_each_scale_from_the_index(capsys: pytest.CaptureFixture):
    assert cli.main(["cfg"]) == 0
    out = capsys.readouterr().out
    assert "measured now" not in out  # the index is current (tests/test_cfg_index.py)
    listed = re.findall(
        r"^(yolo\S+\.yaml)\s+(\S+(?: \S+)?)\s+(detect|segment|semantic|depth|pose|obb|classify)\s", out, re.MULTILINE
    )
    names = {m[0] for m in listed}
    for path in CFG.glob("*.yaml"):
        for scale in yaml.safe_load(path.read_text())["scales"]:
            assert configs.scaled_name(path.name, scale) in names
    line = next(x for x in out.splitlines() if x.startswith("yolov8s-mobilevit-seg.yaml "))
    assert re.search(r"MobileViT\s+segment\s+YOLOv8 Segment\s+[\d.]+\s+[\d.]+\s+[\d.]+$", line), line


def test_cfg_name_writes_a_copy_to_edit(empty_cwd: Path, capsys: pytest.CaptureFixture):
    assert cli.main(["cfg", "yolo26s-mobilevit-xxs.yaml"]) == 0
    copy = empty_cwd / "yolo26-mobilevit-xxs.yaml"  # the file's own name: model=yolo26s-... then picks the copy
    assert copy.read_bytes() == (CFG / "yolo26-mobilevit-xxs.yaml").read_bytes()
    assert "model=yolo26s-mobilevit-xxs.yaml" in capsys.readouterr().out
    copy.write_text(copy.read_text().replace("nc: 80", "nc: 5"))
    assert yaml_model_load("yolo26s-mobilevit-xxs.yaml")["nc"] == 5
    assert cli.main(["cfg", "yolo26-mobilevit-xxs.yaml"]) == 2  # never overwrites an edited copy silently
    assert "exists; remove it or pass --force" in capsys.readouterr().err
    assert cli.main(["cfg", "yolo26-mobilevit-xxs.yaml", "--force"]) == 0
    assert "nc: 80" in copy.read_text()
    assert cli.main(["cfg", "yolov8-mobilvit.yaml"]) == 2
    assert "did you mean yolov8-mobilevit.yaml" in capsys.readouterr().err


# what would read the checkout or the folders beside it: parents[N] of a file, ../shared, "shared" path parts
REPOSITORY_READS = re.compile(
    r"parents\[\s*[1-9]\s*\]|\.parent\.parent|PACKAGE\.parent|\.\./shared|[\"']shared[\"']|shared/datasets"
)
# the one exception: an editable install finds the checkout's cfg/ (a wheel has yolo_mobilevit/cfg instead)
EDITABLE_CFG = ("yolo_mobilevit/configs.py", "checkout = PACKAGE.parent  # an editable install")


def test_package_reads_nothing_of_the_repository_around_it():
    found = [
        (str(path.relative_to(PACKAGE.parent)), line.strip())
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in path.read_text().splitlines()
        if REPOSITORY_READS.search(line)
    ]
    assert [f for f in found if not (f[0] == EDITABLE_CFG[0] and f[1].startswith(EDITABLE_CFG[1]))] == []
    assert len(found) == 1  # the exception is still there, in that one line


def test_test_and_benchmark_helpers_live_outside_the_package():
    assert not (PACKAGE / "tools" / "export_check.py").exists()
    layers = (PACKAGE / "modules" / "layers.py").read_text()
    assert "def count_params" not in layers


def test_compare_default_data_without_a_datasets_folder(monkeypatch: pytest.MonkeyPatch):
    from yolo_mobilevit.tools.compare import default_data, offline_dataset

    monkeypatch.delenv("YOLO_MOBILEVIT_DATASETS", raising=False)
    assert offline_dataset("coco128") is None
    assert default_data() == "coco128.yaml"  # Ultralytics' own (downloaded), never a folder beside the package
