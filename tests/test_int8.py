"""INT8 through the plain ``yolo export ... int8=True`` CLI (fresh interpreters): models with attention get the
plugin's transformer-aware settings (ONNX Runtime: per-channel weights, attention, normalization and head in float;
OpenVINO: NNCF ``ModelType.TRANSFORMER``, head in float; LiteRT: only the weighted ops in INT8, head in float),
CNN-only models keep Ultralytics' own, the INT8 outputs follow the fp32 checkpoint's, and the INT8 files run
through Ultralytics' ``yolo val`` and ``yolo predict``. (litert-torch is not a test dependency: the LiteRT rules are checked against a stand-in quantizer
and op scopes recorded from a real export, and end to end by ``benchmarks/int8_matrix.py --formats tflite``.)"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import CFG, dataset_yaml, yolo
from export_check import calibrated_checkpoint, resized, torch_output
from helpers import assert_predictions
from ultralytics import YOLO

from yolo_mobilevit.export import has_attention, litert_head_scope, make_torch2litert, nncf_transformer

IMGSZ = 64
CONFIGS = {"mobilevit": "yolov8n-mobilevit.yaml", "mobilenetv3": "yolov8n-mobilenetv3-small.yaml"}


@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved checkpoint of the config (random weights, BatchNorm statistics measured on coco8)."""
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)  # the same random init every run: the INT8-vs-fp32 figures below are measured on it
    return calibrated_checkpoint(CFG / CONFIGS[request.param], dataset_yaml("coco8").parent / "images",
                                 folder / f"{request.param}.pt")  # fmt: skip


@pytest.mark.parametrize(
    ("config", "attention", "as_transformer"),
    [
        ("yolov8n-mobilevit.yaml", True, True),
        ("yolov8n-mobilevitv2.yaml", True, True),
        ("yolov8n-mobileformer-151m.yaml", True, False),  # NNCF's transformer scheme measured worse on it
        ("yolov8n-mobilenetv3-large.yaml", False, False),
        ("yolo26n.yaml", False, False),
    ],
)
def test_which_models_get_the_transformer_settings(config: str, attention: bool, as_transformer: bool):
    """ONNX Runtime INT8 keeps attention in float for every model with attention; OpenVINO INT8 quantizes only
    MobileViT v1/v2 as a transformer."""
    model = YOLO(str(CFG / config) if config.startswith("yolov8n-") else config).model
    assert (has_attention(model), nncf_transformer(model)) == (attention, as_transformer)


# LiteRT op scopes (``ai_edge_quantizer``'s ``get_op_scope``) from a ``format=tflite`` export of the trained
# yolo26n-mobilevit-xxs: litert-torch names each op after its module path
_ROOT = "ultralytics.utils.export.engine._NormalizeCoords/ultralytics.nn.tasks.DetectionModel_model/"
LITERT_SCOPES = {
    "softmax": _ROOT + "yolo_mobilevit.modules.mobilevit.MobileViTStage_3/torch.nn.modules.container."
    "Sequential_blocks/yolo_mobilevit.modules.mobilevit.MobileViTBlock_0/torch.nn.modules.container.Sequential_"
    "transformer/yolo_mobilevit.modules.mobilevit.TransformerLayer_0/yolo_mobilevit.modules.mobilevit."
    "MultiHeadSelfAttention_attn;11;",
    "stem conv": _ROOT + "yolo_mobilevit.modules.layers.ConvBNAct_0/torch.nn.modules.conv.Conv2d_conv;4;",
    "head conv": _ROOT + "ultralytics.nn.modules.head.Detect_20/torch.nn.modules.container.Sequential_0/"
    "ultralytics.nn.modules.conv.Conv_0/torch.nn.modules.conv.Conv2d_conv;;",
}


def test_litert_head_scope_selects_the_head_only():
    head = litert_head_scope(YOLO(str(CFG / "yolo26n-mobilevit-xxs.yaml")).model)
    assert [name for name, scope in LITERT_SCOPES.items() if re.search(head, scope)] == ["head conv"]


def test_litert_wrapper_adds_the_rules_before_calibration(monkeypatch: pytest.MonkeyPatch):
    """Against a stand-in ``ai_edge_quantizer`` (litert-torch is not installed here): a MobileViT static INT8 export
    calibrates with the rules added after Ultralytics' recipe (all float, then the weighted ops INT8 with the recipe's
    own configuration, then the head float), the stock ``Quantizer`` comes back afterwards, and other models or
    schemes reach Ultralytics' function untouched."""
    rules: list[tuple[str, str, str]] = []

    class Quantizer:
        def get_quantization_recipe(self) -> list[dict]:
            return [{"regex": ".*", "operation": "*", "algorithm_key": "min_max", "op_config": {"bits": 8}}]

        def update_quantization_recipe(self, regex: str, op: str, config: object = None, algorithm_key: str = ""):
            rules.append((regex, op, algorithm_key))

        def calibrate(self, data: dict) -> str:
            return "calibrated"

    package = types.ModuleType("ai_edge_quantizer")
    package.quantizer = types.SimpleNamespace(Quantizer=Quantizer)
    package.qtyping = types.SimpleNamespace(
        TFLOperationName=lambda op: op, OpQuantizationConfig=types.SimpleNamespace(from_dict=dict)
    )
    package.qtyping.TFLOperationName.ALL_SUPPORTED = "*"
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", package)
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer.algorithm_manager",
                        types.SimpleNamespace(AlgorithmName=types.SimpleNamespace(NO_QUANTIZE="no_quantize")))  # fmt: skip
    monkeypatch.setattr("ultralytics.utils.checks.check_requirements", lambda *a, **k: True)

    def ultralytics_torch2litert(model, im, file, quantize=None, calibration_dataset=None, metadata=None, prefix=""):
        return package.quantizer.Quantizer().calibrate({})  # what Ultralytics does after loading its recipe

    wrapped = make_torch2litert(ultralytics_torch2litert)
    flagship = YOLO(str(CFG / "yolov8n-mobilevit.yaml")).model
    assert wrapped(flagship, None, "f.tflite", 8, []) == "calibrated"
    assert rules == [
        (".*", "*", "no_quantize"),
        (".*", "FULLY_CONNECTED", "min_max"),
        (".*", "CONV_2D", "min_max"),
        (".*", "DEPTHWISE_CONV_2D", "min_max"),
        (litert_head_scope(flagship), "*", "no_quantize"),
    ]
    assert package.quantizer.Quantizer is Quantizer
    rules.clear()
    mobilenet = YOLO(str(CFG / "yolov8n-mobilenetv3-large.yaml")).model
    assert (
        wrapped(mobilenet, None, "f.tflite", 8, []) == wrapped(flagship, None, "f.tflite", "w8a16", []) == "calibrated"
    )
    assert rules == []


def export_int8(pt: Path, fmt: str) -> tuple[Path, str]:
    """``yolo export format=FMT int8=True`` with coco8 as calibration data; the exported file and the export log."""
    out = yolo("export", f"model={pt}", f"format={fmt}", "int8=True", f"data={dataset_yaml('coco8')}",
               f"imgsz={IMGSZ}", "device=cpu", cwd=pt.parent)  # fmt: skip
    path = pt.with_name(f"{pt.stem}_int8.onnx") if fmt == "onnx" else pt.with_name(f"{pt.stem}_int8_openvino_model")
    assert path.exists(), f"{path} was not written\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
    return path, out.stdout + out.stderr


def agreement_with_fp32(pt: Path, exported: Path) -> dict[str, float]:
    """The INT8 file's raw output (decoded boxes and class scores before NMS, through Ultralytics' ``AutoBackend``)
    against the fp32 checkpoint's on coco8's val images: the correlation of the class scores, and the median box
    error (px, for the log: decoded boxes are dominated by their anchor positions, so even two unrelated models'
    boxes correlate at 0.97-0.99 and differ by a median 5-7 px at 64 px; scores are what tells them apart)."""
    import numpy as np
    from ultralytics.nn.autobackend import AutoBackend

    files = sorted((dataset_yaml("coco8").parent / "images" / "val").glob("*.jpg"))
    images = torch.stack([resized(f, IMGSZ) for f in files])
    expected = torch_output(YOLO(str(pt)).model.float().eval(), images)
    backend = AutoBackend(str(exported), device=torch.device("cpu"))
    got = []
    for image in images:
        out = backend(image[None])
        out = out[0] if isinstance(out, (list, tuple)) else out
        got.append(out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out))
    got = np.concatenate(got)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return {
        "score corr": float(np.corrcoef(got[:, 4:].ravel(), expected[:, 4:].ravel())[0, 1]),
        "median box px": float(np.median(np.abs(got[:, :4] - expected[:, :4]))),
    }


def assert_close_to_fp32(pt: Path, exported: Path) -> None:
    """INT8 keeps the fp32 model's scores. Measured at 64 px on these seeded, calibrated checkpoints: score
    correlation 0.74-0.81 (MobileViT) and 0.95-0.98 (MobileNetV3) over both runtimes; two unrelated initializations
    of the same config correlate at 0.02-0.04, so a broken scale or a wrongly quantized head fails here."""
    got = agreement_with_fp32(pt, exported)
    print(pt.stem, exported.name, got)
    assert got["score corr"] > 0.5, got


def val_and_predict(exported: Path) -> None:
    """The INT8 file through Ultralytics' own ``yolo val`` (a metrics line) and ``yolo predict`` (boxes written for
    every image)."""
    common = [f"imgsz={IMGSZ}", "device=cpu", f"project={exported.parent}", "exist_ok=True"]
    out = yolo("val", f"model={exported}", f"data={dataset_yaml('coco8')}", "batch=1", "plots=False", "name=val",
               *common, cwd=exported.parent)  # fmt: skip
    assert re.search(r"^\s+all\s+\d+\s+\d+", out.stdout + out.stderr, re.MULTILINE), out.stdout[-2000:]
    images = dataset_yaml("coco8").parent / "images" / "val"
    yolo("predict", f"model={exported}", f"source={images}", "save_txt=True", "save=False", "name=predict",
         "conf=0.0001", *common, cwd=exported.parent)  # fmt: skip
    assert_predictions(exported.parent / "predict" / "labels", images)


def onnx_int8_settings(path: Path) -> dict[str, int]:
    """What an INT8 ONNX graph quantized: convolutions reading INT8 activations, weights with per-channel scales,
    detection-head convolutions with INT8 weights, and attention MatMuls (two activations), LayerNorms and softmaxes
    reading INT8 input."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    weights = {t.name: t for t in graph.initializer}

    def dequantized(name: str) -> onnx.NodeProto | None:
        node = produced_by.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def reads_int8_activation(node: onnx.NodeProto) -> bool:
        return any(dequantized(i) is not None and dequantized(i).input[0] not in weights for i in node.input)

    def is_weight(name: str) -> bool:  # an initializer, float or through its INT8 DequantizeLinear
        return name in weights or (dequantized(name) is not None and dequantized(name).input[0] in weights)

    weight_scales = [
        numpy_helper.to_array(weights[n.input[1]]).size
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights and n.input[1] in weights
    ]
    head = f"/model.{max(int(n.name.split('/')[1].split('.')[1]) for n in graph.node if n.name.startswith('/model.'))}/"
    attention = [n for n in graph.node if n.op_type == "MatMul" and not any(map(is_weight, n.input))]
    sensitive = attention + [n for n in graph.node if n.op_type in {"Softmax", "LayerNormalization"}]
    return {
        "int8 convs": sum(n.op_type == "Conv" and reads_int8_activation(n) for n in graph.node),
        "per-channel weights": sum(size > 1 for size in weight_scales),
        "per-tensor weights": sum(size == 1 for size in weight_scales),
        "int8 head convs": sum(
            n.name.startswith(head) and n.op_type == "Conv" and dequantized(n.input[1]) is not None for n in graph.node
        ),
        "attention/norm ops": len(sensitive),
        "int8 attention/norm ops": sum(map(reads_int8_activation, sensitive)),
    }


def openvino_int8_settings(folder: Path) -> dict[str, int]:
    """What an INT8 OpenVINO IR quantized: convolutions reading INT8 (a FakeQuantize output), and LayerNorms (MVN),
    softmaxes and fused attention ops (ScaledDotProductAttention) reading INT8, seen through layout ops."""
    import openvino as ov

    layout = {"Transpose", "Reshape", "Split", "VariadicSplit"}
    ops = ov.Core().read_model(next(folder.glob("*.xml"))).get_ordered_ops()

    def reads_int8(op: ov.Node) -> bool:
        for i in range(op.get_input_size()):
            source = op.input_value(i).get_node()
            while source.get_type_name() in layout:
                source = source.input_value(0).get_node()
            if source.get_type_name() == "FakeQuantize":
                return True
        return False

    norms = [op for op in ops if op.get_type_name() in {"MVN", "Softmax"}]
    attention = [op for op in ops if op.get_type_name() == "ScaledDotProductAttention"]
    return {
        "int8 convs": sum(op.get_type_name() == "Convolution" and reads_int8(op) for op in ops),
        "norm/softmax ops": len(norms),
        "int8 norm/softmax ops": sum(map(reads_int8, norms)),
        "attention ops": len(attention),
        "int8 attention ops": sum(map(reads_int8, attention)),
    }


def export_and_inspect(pt: Path, fmt: str) -> tuple[Path, dict[str, int]]:
    """Export ``pt`` to INT8 ``fmt``; check the log names the plugin's settings exactly for MobileViT and that some
    convolution reads INT8; return the exported file and what it quantized."""
    path, log = export_int8(pt, fmt)
    got = onnx_int8_settings(path) if fmt == "onnx" else openvino_int8_settings(path)
    print(pt.stem, fmt, got)
    marker = {"onnx": "transformer-aware", "openvino": "NNCF as a transformer"}[fmt]
    assert (marker in log) == (pt.stem == "mobilevit"), log[-2000:]
    assert got["int8 convs"] > 0, got
    return path, got


@pytest.mark.slow
def test_onnx_int8(checkpoint: Path):
    """MobileViT gets the transformer-aware settings: per-channel weights; head, attention and normalization in
    float. The MobileNet gets Ultralytics' (per-tensor weights, head convolutions in INT8). Measured on the MobileViT
    with Ultralytics' settings instead: 211 per-tensor weights, 19 INT8 head convolutions and 27 of the 49 attention
    MatMuls / LayerNorms / softmaxes reading INT8."""
    path, got = export_and_inspect(checkpoint, "onnx")
    assert_close_to_fp32(checkpoint, path)
    if checkpoint.stem == "mobilevit":
        assert got["per-channel weights"] > 0 and got["per-tensor weights"] == 0, got
        assert got["int8 head convs"] == 0, got
        assert got["attention/norm ops"] > 0 and got["int8 attention/norm ops"] == 0, got
        val_and_predict(path)  # the same path for every INT8 file: checked once, on MobileViT
    else:
        assert got["per-channel weights"] == 0 and got["per-tensor weights"] > 0, got
        assert got["int8 head convs"] > 0, got


@pytest.mark.slow
def test_openvino_int8(checkpoint: Path):
    """NNCF quantizes the convolutions of both; for MobileViT (quantized as a transformer) no LayerNorm or softmax
    reads INT8. Measured on the MobileViT with Ultralytics' settings instead: 21 of its 22 LayerNorms / softmaxes read
    INT8. (The fused attention's q, k, v read INT8 with either setting: NNCF's transformer scheme quantizes them.)"""
    folder, got = export_and_inspect(checkpoint, "openvino")
    assert_close_to_fp32(checkpoint, folder)
    if checkpoint.stem == "mobilevit":
        assert got["norm/softmax ops"] > 0 and got["int8 norm/softmax ops"] == 0, got
        val_and_predict(folder)
