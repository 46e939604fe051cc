#!/bin/bash
# CoreML conversion of every family with Ultralytics' options (default, half, int8, nms) at imgsz 160, the plugin's
# exporter wrapper applied in-process (as the integration table applies it). Writes one line per export to summary.txt
# in the working folder; benchmarks/results/coreml_matrix.md tabulates it.   Usage: bash benchmarks/coreml_matrix.sh
REPO=$(cd "$(dirname "$0")/.." && pwd); WORK=${WORK:-runs/coreml_matrix}; mkdir -p "$WORK"; cd "$WORK"
for cfg in yolov8-mobilevit yolov8-mobilevitv2 yolov8-mobilenetv3-large yolov8-mobilenetv1 yolov8-mobilenetv2 \
           yolov8-mobileformer-26m yolov8-mobileformer-151m; do
  for kw in "" "half=True" "int8=True" "nms=True"; do
    s=$(date +%s)
    nice -n 10 "$REPO/.venv/bin/python" - "$REPO/cfg/$cfg.yaml" $kw > "log_${cfg}_${kw%%=*}.txt" 2>&1 <<'PY'
import sys
from ultralytics import YOLO
from ultralytics.engine import exporter
from yolo_mobilevit.export import make_exporter_call
exporter.Exporter.__call__ = make_exporter_call(exporter.Exporter.__call__)
kwargs = {k: v == "True" for k, v in (a.split("=") for a in sys.argv[2:])}
print("OK", YOLO(sys.argv[1]).export(format="coreml", imgsz=160, **kwargs))
PY
    echo "$cfg ${kw:-default} rc=$? $(( $(date +%s) - s ))s" >> summary.txt
  done
done
