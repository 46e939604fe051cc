#!/usr/bin/env bash
# The install a user gets: build the sdist and the wheel, check their metadata, install the wheel (not editable) into
# a fresh venv and, from an empty folder, run the main job by bare config names: train (a YOLOv8 and a YOLO26 name
# with a scale letter), val, predict, export to ONNX, `yolo-mobilevit cfg` and `doctor`. Offline: a private copy of
# coco8 from $YOLO_MOBILEVIT_DATASETS (default ../shared/datasets beside the checkout), never the downloadable one.
# Usage: bash .ci/wheel_check.sh [PYTHON]  (PYTHON builds; default .venv/bin/python, which has `build` and `twine`)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
builder=${1:-.venv/bin/python}
datasets=${YOLO_MOBILEVIT_DATASETS:-$repo/../shared/datasets}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { echo "== wheel check ($((SECONDS - start)) s): $*"; }

step "build sdist + wheel"
"$builder" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$builder" -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)
"$builder" - "$wheel" "$repo/cfg" <<'EOF'
import sys, zipfile
from pathlib import Path
names = zipfile.ZipFile(sys.argv[1]).namelist()
shipped = sorted(p.name for p in Path(sys.argv[2]).glob("*.yaml"))
packaged = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("yolo_mobilevit/cfg/") and n.endswith(".yaml"))
assert packaged == shipped, f"wheel configs differ from cfg/: {sorted(set(shipped) ^ set(packaged))}"
strays = [n for n in names if n.split("/")[0] in {"tests", "benchmarks", "cfg"} or "export_check" in n]
assert not strays, f"test/benchmark files in the wheel: {strays}"
assert "yolo_mobilevit/cfg_index.json" in names and "yolo_mobilevit_autoload.pth" in names
print(f"wheel: {len(packaged)} configs, the index and the start-up file; no tests or benchmarks")
EOF

# torch: installing the CUDA build of torch 2.14.1 from the registry costs a second 3 GB download (523 s here on a busy
# machine, against 227 s for the wheel and everything else; the CPU build of torch 2.13.0 on this disk has no matching
# torchvision: torchvision::nms fails). So the fresh venv takes torch and torchvision, and nothing else, from the
# builder's environment: a folder of links to those packages, named by a .pth file after the venv's own
# site-packages. Everything else (Ultralytics, OpenCV, ..., the plugin) pip installs fresh from the wheel's metadata.
# WHEEL_CHECK_TORCH="torch==X torchvision==Y" installs them from the registry instead.
step "fresh venv: torch ${WHEEL_CHECK_TORCH:-and torchvision linked from $builder}, then the wheel (not editable)"
python3 -m venv "$work/venv"
py=$work/venv/bin/python
if [ -n "${WHEEL_CHECK_TORCH:-}" ]; then
    # shellcheck disable=SC2086
    "$py" -m pip install -q $WHEEL_CHECK_TORCH
else
    from=$("$builder" -c "import pathlib, torch; print(pathlib.Path(torch.__file__).parents[1])")
    mkdir "$work/torch-stack"
    shopt -s nullglob
    for p in "$from"/{torch,torchgen,functorch,torchvision,torchvision.libs,triton,nvidia,cuda} \
        "$from"/{torch-,torchvision-,triton-,nvidia_cu,nvidia_n,cuda_}*.dist-info; do ln -s "$p" "$work/torch-stack/"; done
    shopt -u nullglob
    echo "$work/torch-stack" >"$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/torch_stack.pth"
fi
"$py" -m pip install -q "$wheel" onnx onnxslim onnxruntime  # else Ultralytics pip-installs them at export
"$py" -m pip list 2>/dev/null | grep -E "^(torch|torchvision|ultralytics|yolo-mobilevit) "

step "an empty folder, offline, a private coco8"
mkdir "$work/empty" "$work/config"
cp -r "$datasets/coco8" "$work/coco8" && chmod -R u+w "$work/coco8" && find "$work/coco8" -name '*.cache' -delete
data=$work/coco8/coco8.yaml
cd "$work/empty"
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$work/config PYTHONPATH=  # nothing from the checkout
yolo=$work/venv/bin/yolo
tiny=(imgsz=64 epochs=1 batch=4 workers=0 device=cpu pretrained=False plots=False project="$work/runs" exist_ok=True)
"$py" -c "import yolo_mobilevit, sys; assert 'site-packages' in yolo_mobilevit.__file__, yolo_mobilevit.__file__"

# The main job of each name: train, then val, predict (and export) its best.pt. The two run side by side, one thread
# each (2 cores in CI); each writes its own log, printed when it ends.
main_job() {  # RUN MODEL: train MODEL by its bare name into runs/RUN, then use what it made
    local run=$1 model=$2 best=$work/runs/$1/weights/best.pt
    "$yolo" train model="$model" data="$data" name="$run" "${tiny[@]}"
    "$yolo" val model="$best" data="$data" imgsz=64 batch=4 workers=0 device=cpu plots=False project="$work/runs" \
        name="$run-val" exist_ok=True
    "$yolo" predict model="$best" source="$work/coco8/images/val" imgsz=64 device=cpu project="$work/runs" \
        name="$run-predict" exist_ok=True
    if [ "$run" = v8 ]; then "$yolo" export model="$best" format=onnx imgsz=64 && test -s "${best%.pt}.onnx"; fi
}
step "train, val, predict: yolov8n-mobilevit.yaml (+ export format=onnx) and yolo26n-mobilevit-xxs.yaml"
OMP_NUM_THREADS=1 main_job v8 yolov8n-mobilevit.yaml >"$work/v8.log" 2>&1 &
v8=$!
OMP_NUM_THREADS=1 main_job y26 yolo26n-mobilevit-xxs.yaml >"$work/y26.log" 2>&1 &
y26=$!
status=0
wait "$v8" || status=1
wait "$y26" || status=1
cat "$work/v8.log" "$work/y26.log"
[ "$status" = 0 ]
for log in "$work/v8.log" "$work/y26.log"; do grep -q "yolo_mobilevit.modules.mobilevit.MobileViTStage" "$log"; done
grep -q "YOLOv8n-mobilevit summary" "$work/v8.log" && grep -q "YOLO26n-mobilevit-xxs summary" "$work/y26.log"

step "yolo-mobilevit cfg / doctor"
"$work/venv/bin/yolo-mobilevit" cfg >"$work/cfg.txt"
grep -q "^yolov8s-mobilevit.yaml " "$work/cfg.txt" && ! grep -q "measured now" "$work/cfg.txt" && tail -3 "$work/cfg.txt"
"$work/venv/bin/yolo-mobilevit" cfg yolov8s-mobilevit.yaml && test -f yolov8-mobilevit.yaml
"$work/venv/bin/yolo-mobilevit" doctor | tee "$work/doctor.txt" | grep -v "^  x"
grep -q "site-packages/yolo_mobilevit/cfg; all resolve by bare name" "$work/doctor.txt"
step "passed"
