#!/usr/bin/env bash
# Install yolo-mobilevit into ./.venv and train a YOLOv8 on a MobileViT-XS backbone from the plain `yolo` CLI.
# Trains on a private copy of ../shared/datasets/coco8 (runs/quickstart/coco8) when present (offline), else on
# Ultralytics' own coco8.yaml (downloads it).
# Override with: DATA=path/to/data.yaml EPOCHS=30 IMGSZ=320 bash examples/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch 2.14.1 / torchvision 0.29.1: the oldest pair the plugin claims (CI also tests the newest); then the plugin.
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[test]"

default_data=coco8.yaml
if [ -f ../shared/datasets/coco8/coco8.yaml ]; then  # a private copy: Ultralytics writes label caches beside the labels
    rm -rf runs/quickstart/coco8 && mkdir -p runs/quickstart
    cp -r ../shared/datasets/coco8 runs/quickstart/coco8 && chmod -R u+w runs/quickstart/coco8
    find runs/quickstart/coco8 -name '*.cache' -delete
    default_data=$(realpath runs/quickstart/coco8/coco8.yaml)
fi
yolo train model=cfg/yolov8n-mobilevit.yaml data="${DATA:-$default_data}" epochs="${EPOCHS:-10}" imgsz="${IMGSZ:-320}" \
    batch=8 device=cpu project="$PWD/runs/quickstart" name=train exist_ok=True
yolo predict model=runs/quickstart/train/weights/best.pt source="$(dirname "${DATA:-$default_data}")/images/val" \
    imgsz="${IMGSZ:-320}" device=cpu project="$PWD/runs/quickstart" name=predict exist_ok=True
