#!/usr/bin/env bash
# The NPU and phone toolchain rows of the export matrix (benchmarks/results/export_matrix_edge.md): Qualcomm QNN,
# AMD Xilinx, MNN INT8, RKNN (fp16 and INT8), Core AI and DEEPX, for every family and stock YOLOv8n (the control).
#
#   DATASETS=/tmp/datasets QNN_PY=... QUARK_PY=... RKNN_PY=... bash benchmarks/export_matrix_edge.sh
#   FAMILIES="yolov8n mobilevit" OUT=/tmp/edge.md ...   # a subset, elsewhere
#
# Toolchain pins clash, so each runs from the python of a venv of its own (the results file lists their packages):
# PY (default .venv/bin/python: the project with MNN, coreai-torch and dx-com), QNN_PY (onnxruntime-qnn instead of
# onnxruntime), QUARK_PY (amd-quark), RKNN_PY (rknn-toolkit2 2.3.2, numpy 1.26). DATASETS: a writable copy of
# ../shared/datasets (INT8 calibration writes label caches beside the labels). OUT is rewritten: the notes under the
# tables in the committed results file (setup, failure causes from the export logs) are written by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/export_matrix_edge.md}
IMAGE=${IMAGE:-../shared/datasets/coco8/images/val/000000000036.jpg}  # INT8 rows compare on an image, not noise
export YOLO_MOBILEVIT_DATASETS=${DATASETS:?a writable copy of ../shared/datasets} YOLO_AUTOINSTALL=false
CALIB=data=$YOLO_MOBILEVIT_DATASETS/coco128/coco128.yaml
ALL=${FAMILIES:-yolov8n mobilevit mobilevitv2 mobilenetv3 mobileformer}
matrix() { "$@" --out "$OUT" --append; }
rm -f "$OUT"
for f in $ALL; do  # one process per family: ONNX Runtime registers the QNN provider once per process
    matrix "$QNN_PY" benchmarks/export_matrix.py --formats qnn --families "$f" --args "$CALIB" --image "$IMAGE"
done
for f in $ALL; do
    matrix "$QUARK_PY" benchmarks/export_matrix.py --formats xilinx --families "$f" --args "$CALIB" --image "$IMAGE"
done
# shellcheck disable=SC2086  # ALL is a word list
{
    matrix "$PY" benchmarks/export_matrix.py --formats mnn --families $ALL --args int8=True --image "$IMAGE"
    matrix "$RKNN_PY" benchmarks/export_matrix.py --formats rknn --families $ALL
    matrix "$RKNN_PY" benchmarks/export_matrix.py --formats rknn --families $ALL --args int8=True "$CALIB"
    matrix "$PY" benchmarks/export_matrix.py --formats coreai --families $ALL
    matrix "$PY" benchmarks/export_matrix.py --formats deepx --families $ALL --args "$CALIB"
}
