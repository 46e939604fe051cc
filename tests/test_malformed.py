"""A corpus of malformed model YAMLs written from the user docs by someone else (tests/fixtures/malformed/, one defect
per file, described in its MANIFEST.yaml): every file is refused at build with a YamlRowError naming the file, the
layer and the row as the user wrote it; the one scale that is legal (Mobile-Former at width 1.1) builds and runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

import yolo_mobilevit  # noqa: F401  (registers the plugin)
from yolo_mobilevit.errors import YamlRowError

CORPUS = Path(__file__).parent / "fixtures" / "malformed"
MANIFEST = yaml.safe_load((CORPUS / "MANIFEST.yaml").read_text())
BUILDS = {"yolov8n-59-mf-scale-width-odd.yaml"}  # every Mobile-Former row rounds widths to multiples of 4
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _build(path: Path):
    from ultralytics import YOLO

    return YOLO(str(path))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][\w.]*", NUMBER.sub(" ", text)))


def _numbers(text: str) -> list[float]:
    return [float(t) for t in NUMBER.findall(re.sub(r"[A-Za-z_]\w*", " ", text))]


def test_manifest_covers_the_folder():
    assert sorted(e["file"] for e in MANIFEST) == sorted(p.name for p in CORPUS.glob("*.yaml") if p.stem != "MANIFEST")
    assert len(MANIFEST) == 62


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["file"] not in BUILDS], ids=lambda e: e["file"])
def test_malformed_yaml_is_refused_naming_file_layer_and_row(entry):
    path = CORPUS / entry["file"]
    with pytest.raises(YamlRowError) as info:
        _build(path)
    message = str(info.value)
    assert str(path) in message
    written = entry["row_text"]
    if entry["layer"] is None:  # a file-level defect: the nc line, the scales line or the file name's scale letter
        key = "scale" if written.startswith("(file name") else written.split(":")[0].strip()
        assert key in message
        return
    assert f"layer {entry['layer']} ({entry['section']} row {entry['row']})" in message
    # the row as written: every word (module, activation, `nc`...) and every number appear in the quoted row
    assert _words(written) <= _words(message), (written, message)
    remaining = _numbers(message)
    for value in _numbers(written):
        assert value in remaining, (written, message)
        remaining.remove(value)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_legal_odd_scale_builds_and_runs(name):
    model = _build(CORPUS / name).model.eval()
    for size in (64, 96):
        with torch.no_grad():
            out = model(torch.zeros(1, 3, size, size))
        pred = out[0] if isinstance(out, (list, tuple)) else out
        assert pred.shape[0] == 1 and pred.shape[1] == 4 + model.yaml["nc"]
