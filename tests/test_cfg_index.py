"""The index ``yolo-mobilevit cfg`` lists from is current: every shipped config is in it with its file's digest, and
a sample of its figures (each family, each task) measures the same today."""

from __future__ import annotations

import pytest
from conftest import CFG

from yolo_mobilevit import configs

INDEX = configs.read_index()
STALE = f"rewrite it: {configs.INDEX_COMMAND} (new or changed configs; add --all after a change of the code)"
# one config per backbone family (detect) and per task; the others share their modules and heads
SAMPLE = [
    "yolov8-mobilevit-xxs.yaml",
    "yolo26-mobilevitv2-050.yaml",
    "yolov8-mobilenetv1.yaml",
    "yolo26-mobilenetv3-small.yaml",
    "yolov8-mobileformer-26m.yaml",
    "yolov8-mobilenetv2-seg.yaml",
    "yolo26-mobilenetv2-pose.yaml",
    "yolo26-mobilenetv1-obb.yaml",
    "yolov8-mobilenetv3-large-cls.yaml",
]


def test_index_names_every_shipped_config_with_its_digest():
    shipped = {p.name: configs.digest(p) for p in CFG.glob("*.yaml")}
    indexed = {name: entry["sha256"] for name, entry in INDEX["configs"].items()}
    assert sorted(shipped) == sorted(indexed), STALE
    assert [n for n in shipped if shipped[n] != indexed[n]] == [], f"changed since the index was measured; {STALE}"
    assert INDEX["imgsz"] == configs.IMGSZ and INDEX["command"] == configs.INDEX_COMMAND


@pytest.mark.parametrize("name", SAMPLE)
def test_indexed_figures_measure_the_same_today(name: str):
    assert configs.measure(CFG / name) == INDEX["configs"][name], STALE


def test_a_config_not_in_the_index_is_measured_when_listed(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A config added after the index was written (here a copy under a new name) is built and measured on the spot:
    its rows carry the figures the index has for the same file."""
    (tmp_path / "yolo26-mobilenetv3-new.yaml").write_bytes((CFG / "yolo26-mobilenetv3-small.yaml").read_bytes())
    monkeypatch.setattr(configs, "config_dir", lambda: tmp_path)
    lines: list[str] = []
    rows, measured = configs.listing(progress=lines.append)
    assert measured == 1 and "yolo26-mobilenetv3-new.yaml" in lines[0]
    indexed = INDEX["configs"]["yolo26-mobilenetv3-small.yaml"]["scales"]
    assert [r["model"] for r in rows] == [f"yolo26{s}-mobilenetv3-new.yaml" for s in indexed]
    assert [r["params (M)"] for r in rows] == [f"{f['params'] / 1e6:.2f}" for f in indexed.values()]
