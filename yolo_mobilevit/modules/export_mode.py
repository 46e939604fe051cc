"""The export mode: what the running export needs from the graph being traced, readable by every module.

A traced graph records every size the forward pass reads as a graph op, so a module cannot tell from its input whether
the export will be fixed-size (``dynamic=False``) or must serve every size. The exporter wrapper
(:func:`yolo_mobilevit.export.make_exporter_call`) states it for the duration of an export with :func:`exporting`;
blocks read it with :func:`export_mode` (``None`` outside an export: the graph then stays valid for every size). It
lives here, below the blocks and above nothing, as timm's ``layers/config.py`` does for its layer settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class ExportMode:
    """What the running export needs from the traced graph.

    static: the input size is fixed in the exported graph, so sizes may be baked in (no resize for even maps, no
        shape arithmetic).
    four_d_patches: the target lacks ``pixel_unshuffle`` / ``pixel_shuffle``
        (:data:`yolo_mobilevit.export.FOUR_D_PATCH_FORMATS`), so patches are cut with reshapes and transposes of at
        most 4 dimensions instead.
    unmasked_windows: the target's attention mishandles an additive mask (NCNN's SDPA with ``attn_mask`` returns wrong
        values), so a fixed-size export of windowed MobileViT attention cuts padded maps into regular window grids
        instead of padding and masking (:meth:`yolo_mobilevit.modules.mobilevit.MobileViTBlock.windowed_representation`).
    transformer: the model holds attention (MobileViT v1/v2, Mobile-Former), so ONNX Runtime INT8 keeps attention,
        normalization and the head in float (:func:`yolo_mobilevit.export.make_onnx_int8_quantize`; OpenVINO decides
        by :func:`yolo_mobilevit.export.nncf_transformer`).
    """

    static: bool = False
    four_d_patches: bool = False
    unmasked_windows: bool = False
    transformer: bool = False


_MODE: ContextVar[ExportMode | None] = ContextVar("yolo_mobilevit_export_mode", default=None)


def export_mode() -> ExportMode | None:
    """The :class:`ExportMode` of the export running in this context, or ``None`` outside one."""
    return _MODE.get()


@contextlib.contextmanager
def exporting(mode: ExportMode) -> Iterator[ExportMode]:
    """Trace under ``mode`` (nested uses restore the outer mode on exit)."""
    token = _MODE.set(mode)
    try:
        yield mode
    finally:
        _MODE.reset(token)


__all__ = ["ExportMode", "export_mode", "exporting"]
