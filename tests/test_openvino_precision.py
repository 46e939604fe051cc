"""Plugin OpenVINO exports run in the precision they were exported in when Ultralytics loads them: the export records
it (``rt_info``) and the plugin's ``OpenVINOBackend.load_model`` wrapper compiles with it as
``INFERENCE_PRECISION_HINT``, where the CPU plugin would pick bf16 on CPUs with AMX / AVX512-BF16. Stock exports and
the ``YOLO_MOBILEVIT_OPENVINO_PRECISION=default`` switch keep the CPU plugin's own choice. Ultralytics 8.4.0 has
neither ``torch2openvino`` nor ``OpenVINOBackend`` (not covered there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CFG
from ultralytics import YOLO
from ultralytics.nn.autobackend import AutoBackend

from yolo_mobilevit.export import OPENVINO_PRECISION_SWITCH, recorded_openvino_precision

ov = pytest.importorskip("openvino")
pytest.importorskip(
    "ultralytics.nn.backends.openvino",
    reason="this Ultralytics (8.4.0) exports and compiles OpenVINO without the functions the plugin wraps",
)


def export(tmp_path: Path, cfg: str, **kwargs: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    pt = tmp_path / f"{Path(cfg).stem}.pt"
    YOLO(cfg).save(pt)
    return Path(YOLO(str(pt)).export(format="openvino", imgsz=64, device="cpu", **kwargs))


def compiled_precision(folder: Path) -> object:
    backend = AutoBackend(str(folder), device=torch.device("cpu"), verbose=False)
    compiled = getattr(backend, "ov_compiled_model", None) or backend.backend.ov_compiled_model
    return compiled.get_property("INFERENCE_PRECISION_HINT")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ov_precision")
    return {
        "plugin": export(folder, str(CFG / "yolov8n-mobilevit-xxs.yaml")),
        "plugin_half": export(folder / "half", str(CFG / "yolov8n-mobilevit-xxs.yaml"), half=True),
        "stock": export(folder / "stock", "yolov8n.yaml"),
    }


def test_export_records_its_precision(exports: dict[str, Path]) -> None:
    core = ov.Core()
    read = {k: core.read_model(str(next(v.glob("*.xml")))) for k, v in exports.items()}
    assert recorded_openvino_precision(read["plugin"]) == "f32"
    assert recorded_openvino_precision(read["plugin_half"]) == "f16"
    assert recorded_openvino_precision(read["stock"]) is None


def test_fp32_export_compiles_in_fp32(exports: dict[str, Path]) -> None:
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")  # bf16 on AMX / AVX512-BF16 CPUs
    assert compiled_precision(exports["plugin"]) == ov.Type.f32, f"CPU plugin default here: {default}"
    assert compiled_precision(exports["stock"]) == default  # not the plugin's model: left alone


def test_switch_leaves_the_cpu_default(exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPENVINO_PRECISION_SWITCH, "default")
    assert compiled_precision(exports["plugin"]) == ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
