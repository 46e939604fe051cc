"""Export-time knowledge the modules cannot see while they are traced, and the Ultralytics exporter wrappers that
supply it.

A traced graph records every size the forward pass reads as a graph op, so a module cannot tell from its input
whether the export will be fixed-size (``dynamic=False``) or must serve every size. :func:`make_exporter_call` wraps
``Exporter.__call__`` and states it in an :class:`~yolo_mobilevit.modules.export_mode.ExportMode` for the duration
of the export; the MobileViT blocks read it with :func:`~yolo_mobilevit.modules.export_mode.export_mode` (``None``
outside an Ultralytics export: the graph then stays valid for every size, as before). The mode lives a layer down,
in :mod:`yolo_mobilevit.modules.export_mode` (re-exported here), so the blocks import nothing from this module. The
INT8 wrappers give the hybrid transformers the quantization settings they need (ONNX Runtime:
:func:`onnx_float_nodes`; OpenVINO: :func:`make_torch2openvino`; LiteRT: :func:`transformer_aware_recipe`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .modules.export_mode import ExportMode, export_mode, exporting

#: formats whose converters lack pixel_unshuffle / pixel_shuffle: CoreML's iOS15 opset, and onnx2tf (TF SavedModel,
#: TF GraphDef, TF.js, Edge TPU), which fails on the DepthToSpace of MobileViT's patch folding
FOUR_D_PATCH_FORMATS = frozenset({"coreml", "mlmodel", "mlpackage", "saved_model", "pb", "tfjs", "edgetpu"})
#: formats whose attention gets an additive mask wrong: windowed attention is exported without one (fixed-size only).
UNMASKED_WINDOW_FORMATS = frozenset({"ncnn"})


def has_attention(model: Any) -> bool:
    """Whether ``model`` (an ``nn.Module``) holds an attention block of a registered family
    (:func:`yolo_mobilevit.families.attention_classes`: MobileViT v1/v2, Mobile-Former)."""
    from .families import attention_classes

    blocks = attention_classes()
    return bool(blocks) and any(isinstance(m, blocks) for m in model.modules())


def nncf_transformer(model: Any) -> bool:
    """Whether OpenVINO INT8 should quantize ``model`` as a transformer (NNCF ``ModelType.TRANSFORMER``): it holds an
    attention block of a family whose spec says ``openvino_transformer`` (MobileViT v1/v2). Not Mobile-Former: on a
    trained Mobile-Former-151M it kept 34 % of the fp32 boxes against 78 % with Ultralytics' settings
    (``benchmarks/results/int8_matrix.md``)."""
    from .families import attention_classes

    blocks = attention_classes(openvino_transformer=True)
    return bool(blocks) and any(isinstance(m, blocks) for m in model.modules())


def mode_for(fmt: str, dynamic: bool, transformer: bool = False) -> ExportMode:
    """The :class:`ExportMode` for an Ultralytics ``format=`` and ``dynamic=`` pair."""
    fmt = str(fmt).lower()
    return ExportMode(
        static=not dynamic,
        four_d_patches=fmt in FOUR_D_PATCH_FORMATS,
        unmasked_windows=fmt in UNMASKED_WINDOW_FORMATS,
        transformer=transformer,
    )


def make_exporter_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``ultralytics.engine.exporter.Exporter.__call__(self, model=None)``: the export runs under the
    :class:`ExportMode` of its ``format`` and ``dynamic`` arguments and of the model."""

    def __call__(self: Any, model: Any = None, *args: Any, **kwargs: Any) -> Any:
        transformer = model is not None and has_attention(model)
        with exporting(mode_for(self.args.format, bool(self.args.dynamic), transformer)):
            return original(self, model, *args, **kwargs)

    return __call__


# --- INT8 -------------------------------------------------------------------------------------------------------

ONNX_QUANTIZED_OPS = frozenset({"Conv", "Gemm", "MatMul"})


def onnx_float_nodes(graph: Any) -> list[str]:
    """Names of the nodes an INT8 ONNX graph of a hybrid transformer keeps in float: every node that is not a
    weighted Conv/Gemm/MatMul (LayerNorm, softmax, residual adds, activations), the activation-by-activation MatMuls
    of attention (q @ k, scores @ v: both operands have wide, input-dependent ranges), and the detection head (one
    INT8 scale cannot span box pixels and class probabilities)."""
    weights = {t.name for t in graph.initializer}
    weights |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    layer = [int(n.name.split("/")[1].split(".")[1]) for n in graph.node if n.name.startswith("/model.")]
    head = f"/model.{max(layer)}/" if layer else None
    keep = []
    for n in graph.node:
        weighted = n.op_type in ONNX_QUANTIZED_OPS and any(i in weights for i in n.input[1:2])
        if not weighted or (head and n.name.startswith(head)):
            keep.append(n.name)
    return keep


def make_onnx_int8_quantize(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``ultralytics.utils.export.onnx.onnx_int8_quantize`` (``format=onnx int8=True``): for models with
    attention, ONNX Runtime static quantization with per-channel weights and :func:`onnx_float_nodes` in float;
    other models get Ultralytics' settings unchanged."""

    def onnx_int8_quantize(
        onnx_file: Any, output_file: Any, dataset: Any, transform_fn: Any, input_name: str = "images", prefix: str = ""
    ) -> str:
        mode = export_mode()
        if mode is None or not mode.transformer:
            return original(onnx_file, output_file, dataset, transform_fn, input_name=input_name, prefix=prefix)
        import onnx
        from onnxruntime.quantization import QuantFormat, quantize_static
        from ultralytics.utils import LOGGER
        from ultralytics.utils.export.onnx import onnx_calibration_reader

        keep = onnx_float_nodes(onnx.load(str(onnx_file)).graph)
        LOGGER.info(f"{prefix} quantizing INT8 with ONNX Runtime (transformer-aware: per-channel weights, attention, "
                    f"normalization and head in float: {len(keep)} nodes)...")  # fmt: skip
        quantize_static(
            str(onnx_file),
            str(output_file),
            onnx_calibration_reader(dataset, transform_fn, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            nodes_to_exclude=keep,
        )
        return str(output_file)

    return onnx_int8_quantize


def openvino_head_scope(ov_model: Any) -> list[str]:
    """Friendly names of the detection head's ops in a converted OpenVINO model (the last ``model.N`` scope)."""
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops()]
    layers = [int(n.split("model.")[1].split("/")[0].split(".")[0]) for n in names if "__module.model." in n]
    if not layers:
        return []
    head = f"__module.model.{max(layers)}"
    return [n for n in names if n.startswith((f"{head}/", f"{head}."))]


def make_torch2openvino(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``ultralytics.utils.export.openvino.torch2openvino`` (``format=openvino int8=True``): MobileViT models
    (:func:`nncf_transformer`) are converted in float, then quantized by NNCF as a transformer
    (``ModelType.TRANSFORMER``: only weighted MatMul/Conv inputs and attention's q, k, v quantized, LayerNorm, softmax
    and residual adds left in float, SmoothQuant on the MatMuls; per-channel weights), head in float as Ultralytics
    keeps it. Other models (Mobile-Former, MobileNets, stock YOLO) go through Ultralytics unchanged."""

    def torch2openvino(
        model: Any,
        im: Any,
        output_dir: Any = None,
        dynamic: bool = False,
        quantize: Any = None,
        calibration_dataset: Any = None,
        int8_detect: bool = False,
        prefix: str = "",
    ) -> Any:
        if quantize != 8 or calibration_dataset is None or not nncf_transformer(model):
            ov_model = original(model, im, output_dir, dynamic, quantize, calibration_dataset, int8_detect, prefix)
            return record_openvino_precision(ov_model, model, quantize)
        import nncf
        import openvino as ov
        from ultralytics.utils import LOGGER

        ov_model = original(model, im, None, dynamic, None, None, False, prefix)
        head = openvino_head_scope(ov_model) if int8_detect else []
        LOGGER.info(f"{prefix} quantizing INT8 with NNCF as a transformer ({len(head)} head ops in float)...")
        ov_model = nncf.quantize(
            model=ov_model,
            calibration_dataset=calibration_dataset,
            preset=nncf.QuantizationPreset.MIXED,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=calibration_dataset.get_length() or 300,
            ignored_scope=nncf.IgnoredScope(names=head, validate=False) if head else None,
        )
        record_openvino_precision(ov_model, model, quantize)
        if output_dir is not None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            ov.save_model(ov_model, Path(output_dir) / "model.xml", compress_to_fp16=False)
        return ov_model

    return torch2openvino


#: LiteRT ops that keep INT8 in a model with attention (the weighted ones); every other op stays float
LITERT_QUANTIZED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def litert_head_scope(model: Any) -> str:
    """The regex of ``model``'s detection head in LiteRT op scopes: litert-torch names each op after its module path,
    one ``package.module.Class_attribute`` per level (``...DetectionModel_model/ultralytics.nn.modules.head.Detect_20/
    ...``)."""
    head = type(model.model[-1])
    return re.escape(f"{head.__module__}.{head.__qualname__}_")


def transformer_aware_recipe(quantizer: Any, head: str) -> None:
    """Replace the static INT8 recipe loaded in an ``ai_edge_quantizer.Quantizer`` (Ultralytics' ``static_wi8_ai8``,
    per-channel weights) by the settings of :func:`onnx_float_nodes`: only :data:`LITERT_QUANTIZED_OPS` in INT8, with
    the recipe's own configuration; LayerNorm, softmax, attention's activation-by-activation matmuls, residual adds,
    activations and the whole ``head`` in float (later rules win)."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName
    (base,) = [r for r in quantizer.get_quantization_recipe() if r["regex"] == ".*" and r["operation"] == "*"]
    quantizer.update_quantization_recipe(".*", ops.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
    for op in LITERT_QUANTIZED_OPS:
        config = qtyping.OpQuantizationConfig.from_dict(base["op_config"])
        quantizer.update_quantization_recipe(".*", ops(op), config, algorithm_key=base["algorithm_key"])
    quantizer.update_quantization_recipe(head, ops.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)


def make_torch2litert(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``ultralytics.utils.export.litert.torch2litert`` (``format=tflite int8=True``): for models with attention,
    static INT8 of the weighted ops only (:func:`transformer_aware_recipe`); other models (and ``w8a16``/``w8a32``)
    get Ultralytics' settings unchanged. The rules join Ultralytics' recipe just before calibration, through a
    ``Quantizer`` subclass that stands in for ai_edge_quantizer's during this call only."""

    def torch2litert(
        model: Any,
        im: Any,
        file: Any,
        quantize: Any = None,
        calibration_dataset: Any = None,
        metadata: Any = None,
        prefix: str = "",
    ) -> str:
        if quantize != 8 or not has_attention(model):
            return original(model, im, file, quantize, calibration_dataset, metadata, prefix)
        from ultralytics.utils import LOGGER
        from ultralytics.utils.checks import check_requirements

        check_requirements("ai-edge-quantizer>=0.10.0")  # as Ultralytics checks it, but before the subclass needs it
        from ai_edge_quantizer import quantizer

        head = litert_head_scope(model)
        stock = quantizer.Quantizer

        class TransformerAwareQuantizer(stock):
            def calibrate(self, *args: Any, **kwargs: Any) -> Any:
                transformer_aware_recipe(self, head)
                return super().calibrate(*args, **kwargs)

        LOGGER.info(f"{prefix} quantizing INT8 transformer-aware: only {', '.join(LITERT_QUANTIZED_OPS)} in INT8 "
                    "(per-channel weights); normalization, attention, activations and head in float...")  # fmt: skip
        quantizer.Quantizer = TransformerAwareQuantizer
        try:
            return original(model, im, file, quantize, calibration_dataset, metadata, prefix)
        finally:
            quantizer.Quantizer = stock

    return torch2litert


# --- OpenVINO precision at load time ----------------------------------------------------------------------------

#: Where a plugin OpenVINO export records the precision its float ops were exported in (``rt_info``, saved in the
#: ``.xml``): ``"f32"``, or ``"f16"`` for ``half=True``. INT8 exports record ``"f32"``: their float ops are fp32.
OPENVINO_PRECISION_KEY = ["yolo_mobilevit", "inference_precision"]
#: ``YOLO_MOBILEVIT_OPENVINO_PRECISION=default`` leaves the CPU plugin's own choice (bf16 on AMX / AVX512-BF16 CPUs).
OPENVINO_PRECISION_SWITCH = "YOLO_MOBILEVIT_OPENVINO_PRECISION"


def record_openvino_precision(ov_model: Any, model: Any, quantize: Any) -> Any:
    """Record in ``ov_model``'s ``rt_info`` (:data:`OPENVINO_PRECISION_KEY`) the precision a plugin model (one holding
    plugin rows) was exported in; stock models are left as they are. Returns ``ov_model``."""
    from .modules.rows import YamlModule

    if ov_model is not None and any(isinstance(m, YamlModule) for m in model.modules()):
        ov_model.set_rt_info("f16" if quantize == 16 else "f32", OPENVINO_PRECISION_KEY)
    return ov_model


def recorded_openvino_precision(ov_model: Any) -> str | None:
    """The precision :func:`record_openvino_precision` stored in ``ov_model``, or None (stock or older exports)."""
    if not hasattr(ov_model, "has_rt_info") or not ov_model.has_rt_info(OPENVINO_PRECISION_KEY):
        return None
    return str(ov_model.get_rt_info(OPENVINO_PRECISION_KEY).astype(str))


@contextlib.contextmanager
def openvino_export_precision() -> Iterator[None]:
    """While active, ``openvino.Core()`` builds a Core whose ``compile_model`` on the CPU adds
    ``INFERENCE_PRECISION_HINT`` = the precision the model records (:func:`recorded_openvino_precision`), unless the
    caller's config sets one. The CPU plugin otherwise runs fp32 models in bf16 on CPUs with AMX or AVX512-BF16.
    Re-entrant; off with ``YOLO_MOBILEVIT_OPENVINO_PRECISION=default``."""
    import os

    import openvino as ov

    stock = ov.Core
    if os.environ.get(OPENVINO_PRECISION_SWITCH, "").strip().lower() == "default" or getattr(stock, "_plugin", False):
        yield
        return

    class ExportPrecisionCore(stock):
        _plugin = True

        def compile_model(self, model: Any, device_name: Any = None, config: Any = None, **kwargs: Any) -> Any:
            precision = recorded_openvino_precision(model)
            device = str(device_name or "").upper()
            if precision and device.startswith("CPU") and "INFERENCE_PRECISION_HINT" not in (config or {}):
                config = {**(config or {}), "INFERENCE_PRECISION_HINT": precision}
            return super().compile_model(model, device_name, config, **kwargs)

    ov.Core = ExportPrecisionCore
    try:
        yield
    finally:
        ov.Core = stock


def make_openvino_load(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``OpenVINOBackend.load_model(self, weight)`` (Ultralytics releases with ``ultralytics.nn.backends``): plugin
    exports compile on the CPU in the precision they were exported in (:func:`openvino_export_precision`). Releases
    that compile OpenVINO models inside ``AutoBackend`` (8.4.0) also export without ``torch2openvino``, so their
    exports carry no record and keep the CPU plugin's default."""

    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        with openvino_export_precision():
            return original(self, *args, **kwargs)

    return load_model
