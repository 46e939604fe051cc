#!/usr/bin/env bash
# The GPU half of the benchmarks in one run, meant to fit in about ten minutes on one H100/H200 (an estimate: not yet
# run on a GPU):
#   1. backbone_speed.py: our MobileViT-XS backbone vs timm's (same weights) and YOLOv8-MobileViT vs YOLOv8n, eager,
#      fp16 batch 32 and fp16 batch 1 at 640, with the fp16 outputs checked against timm in fp32;
#   2. yolo-mobilevit compare on the GPU: params, GFLOPs, latency, memory, training img/s and mAP at a fixed budget.
#
#   bash benchmarks/gpu_check.sh [OUT]                      # this project installed (README); reports go to OUT
#   STAGE=.offline bash benchmarks/gpu_check.sh [OUT]       # offline machine: install from benchmarks/stage_offline.py
#
# Environment: PYTHON (python3), EPOCHS (50), IMGSZ (320), BATCH (16), MODELS (compare's default list), TRAIN_ARGS
# (extra KEY=VALUE train args), DATA (dataset YAML), COMPARE_TIMEOUT (seconds, 480), WORK (run folders, /tmp/gpu_check).
# OUT receives seven small files: env.txt, backbone_fp16_b32.md, backbone_fp16_b1.md, compare.md, compare.csv,
# map_vs_latency.png and compare_tail.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-runs/gpu_check}" && cd "${1:-runs/gpu_check}" && pwd)
WORK=${WORK:-/tmp/gpu_check}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$WORK"

if [ -n "${STAGE:-}" ]; then  # wheels into a side folder, read as a site dir so that the plugin's .pth is processed
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$STAGE"/*.whl || exit 1
    mkdir -p "$WORK/hook" && echo "import site; site.addsitedir('$WORK/site')" >"$WORK/hook/sitecustomize.py"
    export PYTHONPATH="$WORK/hook"
    DATA=${DATA:-$(ls "$STAGE"/*/*.yaml | head -1)}
fi
# empty: compare's defaults (yolo26n, yolo11n, yolov8n, cfg/yolov8n-mobilevit and the YOLO26 flagship of each family)
MODELS=${MODELS:-}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    "$PY" -c "import torch, ultralytics, timm, yolo_mobilevit; print('torch', torch.__version__, 'cuda',
torch.version.cuda, '| ultralytics', ultralytics.__version__, '| timm', timm.__version__, '| plugin',
yolo_mobilevit.__version__, '| gpu', torch.cuda.get_device_name(0))" 2>&1
} | tee "$OUT/env.txt"

echo "== backbone speed, fp16, batch 32 and batch 1, 640 =="
"$PY" benchmarks/backbone_speed.py --device cuda --half --batch 32 --no-onnx 2>&1 | tee "$OUT/backbone_fp16_b32.md"
"$PY" benchmarks/backbone_speed.py --device cuda --half --batch 1 --no-onnx 2>&1 | tee "$OUT/backbone_fp16_b1.md"

echo "== compare on the GPU: epochs ${EPOCHS:-50}, imgsz ${IMGSZ:-320} (log: $WORK/compare.log) =="
# shellcheck disable=SC2086  # MODELS and TRAIN_ARGS are word lists
timeout "${COMPARE_TIMEOUT:-480}" "$PY" -m yolo_mobilevit.cli compare $MODELS ${DATA:+--data "$DATA"} --device 0 \
    --epochs "${EPOCHS:-50}" --imgsz "${IMGSZ:-320}" --batch "${BATCH:-16}" --batches 1 32 --no-onnx \
    --project "$WORK" --name compare --exist-ok workers=8 val=False ${TRAIN_ARGS:-} >"$WORK/compare.log" 2>&1
echo "compare exit status $?"
tail -c 20000 "$WORK/compare.log" >"$OUT/compare_tail.log"
cp "$WORK/compare/results.md" "$OUT/compare.md" 2>/dev/null && cat "$OUT/compare.md"
cp "$WORK/compare/results.csv" "$OUT/compare.csv" 2>/dev/null
cp "$WORK/compare/map_vs_latency.png" "$OUT/map_vs_latency.png" 2>/dev/null
exit 0
