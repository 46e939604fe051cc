"""CoreML conversion (``format=coreml``) for every backbone family, checked on Linux: coremltools converts here, but
only macOS can run the result, so these tests read the converted program instead of predicting with it: its input,
its outputs and their shapes, the ops it holds, and that it loads on the iOS15 target Ultralytics converts for
(no op from a newer opset, e.g. ``pixel_unshuffle``).

The test extra installs the ``coreml`` extra (coremltools with a NumPy it works with). ``int8=True`` (k-means weight
palettization, 1.5 min even at 64 px) is checked by ``benchmarks/coreml_matrix.sh`` instead."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import coremltools as ct  # the test extra installs the coreml extra
import pytest
from conftest import CFG, dataset_yaml
from export_check import calibrated_checkpoint
from ultralytics import YOLO
from ultralytics.engine.exporter import Exporter

from yolo_mobilevit.export import make_exporter_call

pytestmark = pytest.mark.slow  # every test converts a model (about 11 s each)

IOS15 = 6  # Core ML specification version of iOS15 / macOS12, coremltools' default target for ML programs
IOS15_OPSET = "CoreML5"
NC = 80


def anchors(imgsz: int) -> int:
    return sum((imgsz // s) ** 2 for s in (8, 16, 32))


@pytest.fixture(autouse=True)
def patched_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Exporter, "__call__", make_exporter_call(Exporter.__call__))


def convert(tmp_path: Path, cfg: str, **kwargs: object) -> tuple[object, Counter]:
    """Export ``cfg`` (calibrated random weights) to CoreML; return its spec and the op types of its main program."""
    pt = calibrated_checkpoint(CFG / cfg, dataset_yaml("coco8").parent / "images", tmp_path / f"{Path(cfg).stem}.pt")
    package = Path(YOLO(str(pt)).export(format="coreml", **kwargs))
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    program = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    main = program.mlProgram.functions["main"]
    assert main.opset == IOS15_OPSET, f"{cfg}: program needs opset {main.opset}, Ultralytics targets iOS15"
    ops = Counter(op.type for op in main.block_specializations[main.opset].operations)
    return spec, ops


def weight_dtypes(spec: object) -> Counter:
    """Data types (``"FLOAT16"``, ``"FLOAT32"``, ...) of the weights the program stores in its blob file."""
    from coremltools.proto import MIL_pb2

    program = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    main = program.mlProgram.functions["main"]
    return Counter(
        MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)
        for op in main.block_specializations[main.opset].operations
        if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue"
    )


def image_input(spec: object, imgsz: int) -> None:
    image = spec.description.input[0]
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.height, image.type.imageType.width) == (imgsz, imgsz)


@pytest.mark.parametrize(
    ("cfg", "imgsz", "resizes"),
    [
        ("yolov8-mobilevit.yaml", 64, 0),  # every map even (8, 4, 2): the static graph has no resize
        ("yolov8-mobilevit.yaml", 96, 2),  # P5 is 3x3: its block resizes to 4x4 and back
        ("yolov8-mobilevitv2.yaml", 64, 0),
        ("yolov8-mobilenetv3-large.yaml", 64, 0),
        ("yolov8-mobileformer-26m.yaml", 64, 0),
    ],
)
def test_converts_for_ios15(tmp_path: Path, cfg: str, imgsz: int, resizes: int):
    spec, ops = convert(tmp_path, cfg, imgsz=imgsz)
    assert spec.specificationVersion == IOS15, spec.specificationVersion
    image_input(spec, imgsz)
    (output,) = spec.description.output
    assert list(output.type.multiArrayType.shape) == [1, 4 + NC, anchors(imgsz)]
    assert ops["upsample_bilinear"] == resizes, ops
    assert ops["conv"] > 0 and not {"pixel_unshuffle", "pixel_shuffle", "space_to_depth"} & set(ops)
    assert set(weight_dtypes(spec)) == {"FLOAT32"}  # fp32 unless half=True
    if cfg == "yolov8-mobilevit.yaml":  # 2 + 4 + 3 transformer layers, two LayerNorms each, one per block after
        assert ops["layer_norm"] == 2 * (2 + 4 + 3) + 3 and ops["softmax"] == 9 + 1  # attention, and the DFL


def test_flagship_with_nms_is_a_detection_pipeline(tmp_path: Path):
    """``nms=True``: Ultralytics appends Apple's NMS model; outputs are per-box class confidences and coordinates."""
    spec, ops = convert(tmp_path, "yolov8-mobilevit.yaml", imgsz=64, nms=True)
    assert spec.WhichOneof("Type") == "pipeline"
    assert [m.WhichOneof("Type") for m in spec.pipeline.models] == ["mlProgram", "nonMaximumSuppression"]
    assert spec.specificationVersion == IOS15 and {m.specificationVersion for m in spec.pipeline.models} == {IOS15}
    image_input(spec, 64)
    assert [i.name for i in spec.description.input] == ["image", "iouThreshold", "confidenceThreshold"]
    outputs = {
        o.name: [r.lowerBound for r in o.type.multiArrayType.shapeRange.sizeRanges] for o in spec.description.output
    }
    assert outputs == {"confidence": [0, NC], "coordinates": [0, 4]}
    assert ops["layer_norm"] == 21


def test_flagship_half_stores_fp16_weights(tmp_path: Path):
    spec, ops = convert(tmp_path, "yolov8-mobilevit.yaml", imgsz=64, half=True)
    assert spec.specificationVersion == IOS15
    assert ops["cast"] >= 1  # fp32 image in, fp16 compute inside
    dtypes = weight_dtypes(spec)
    assert dtypes["FLOAT16"] > 0 and set(dtypes) == {"FLOAT16"}, dtypes  # every stored weight in fp16
