#!/bin/bash
# CoreML conversion of every family with Ultralytics' options (default, half, int8, nms) at imgsz 160, the plugin's
# exporter wrapper applied in-process (as the integration table applies it), and stock YOLOv8n for reference. Each
# export's program is read back: specification version and opset (CoreML5 = iOS15, CoreML6 = iOS16). Writes one line
# per export to summary.txt in the working folder; benchmarks/results/coreml_matrix.md tabulates it.
# Usage: bash benchmarks/coreml_matrix.sh      (CONFIGS="yolov8n yolov8-mobilevit" OPTIONS="int8=True" to narrow)
REPO=$(cd "$(dirname "$0")/.." && pwd); WORK=${WORK:-runs/coreml_matrix}; mkdir -p "$WORK"; cd "$WORK"
CONFIGS=${CONFIGS:-"yolov8n yolov8-mobilevit yolov8-mobilevitv2 yolov8-mobilenetv3-large yolov8-mobilenetv1
                    yolov8-mobilenetv2 yolov8-mobileformer-26m yolov8-mobileformer-151m"}
OPTIONS=${OPTIONS:-"default half=True int8=True nms=True"}
for cfg in $CONFIGS; do
  yaml="$REPO/cfg/$cfg.yaml"; [ -f "$yaml" ] || yaml="$cfg.yaml"  # not the plugin's: Ultralytics' own config
  for kw in $OPTIONS; do
    s=$(date +%s)
    nice -n 10 "$REPO/.venv/bin/python" - "$yaml" "$kw" > "log_${cfg}_${kw%%=*}.txt" 2>&1 <<'PY'
import sys
import coremltools as ct
from ultralytics import YOLO
from ultralytics.engine import exporter
from yolo_mobilevit.export import make_exporter_call
exporter.Exporter.__call__ = make_exporter_call(exporter.Exporter.__call__)
kwargs = {k: v == "True" for k, v in (a.split("=") for a in sys.argv[2:] if a != "default")}
package = str(YOLO(sys.argv[1]).export(format="coreml", imgsz=160, **kwargs))
spec = ct.models.MLModel(package, skip_model_load=True).get_spec()
program = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
print(f"RESULT spec {spec.specificationVersion} opset {program.mlProgram.functions['main'].opset}")
PY
    rc=$?
    echo "$cfg $kw rc=$rc $(( $(date +%s) - s ))s $(grep -o 'spec [0-9]* opset [A-Za-z0-9]*' "log_${cfg}_${kw%%=*}.txt")" >> summary.txt
  done
done
