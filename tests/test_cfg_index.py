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
