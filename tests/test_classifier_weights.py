"""ImageNet classifiers converted into the -cls configs: whole-model logit parity with the reference, class subsets
for a dataset's ImageNet classes, and `yolo classify val` on the converted checkpoint from the plain CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import timm
import torch
import torchvision
from conftest import CFG, DATASETS, YOLO_BIN, python, run
from PIL import Image
from torch import nn
from ultralytics import YOLO

from yolo_mobilevit.convert import ConversionError, convert_checkpoint
from yolo_mobilevit.modules.layers import NORM_PRESETS

# (cls config family, reference library, reference name, input preset of the config's ImageNorm row or "raw")
REFERENCES = [
    ("mobilevit", "timm", "mobilevit_xs", "raw"),
    ("mobilevitv2", "timm", "mobilevitv2_100", "raw"),
    ("mobilenetv1", "timm", "mobilenetv1_100", "inception"),
    ("mobilenetv2", "torchvision", "mobilenet_v2", "imagenet"),
    ("mobilenetv2", "timm", "mobilenetv2_100", "imagenet"),
    ("mobilenetv3-large", "torchvision", "mobilenet_v3_large", "imagenet"),
    ("mobilenetv3-large", "timm", "mobilenetv3_large_100", "imagenet"),
    ("mobilenetv3-small", "torchvision", "mobilenet_v3_small", "imagenet"),
    ("mobilenetv3-small", "timm", "mobilenetv3_small_100", "imagenet"),
]
IMAGENET10 = DATASETS / "imagenet10"
# imagenet10's folders are ImageNet-1k's first ten classes; their ImageNet indices, in ImageNet order:
IMAGENET_FIRST_TEN = ["tench", "goldfish", "great_white_shark", "tiger_shark", "hammerhead", "electric_ray",
                      "stingray", "cock", "hen", "ostrich"]  # fmt: skip


def reference(library: str, name: str, seed: int = 0) -> nn.Module:
    """A randomly initialised reference classifier with non-trivial BN statistics (never downloads)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False) if library == "timm" else torchvision.models.get_model(name)
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for attr, (lo, hi) in {
                "running_mean": (-0.2, 0.2),
                "running_var": (0.5, 2.0),
                "weight": (0.5, 1.5),
            }.items():
                t = getattr(m, attr)
                t.data.copy_(torch.rand(t.shape, generator=generator) * (hi - lo) + lo)
    return model.eval()


def normalise(x: torch.Tensor, preset: str) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM_PRESETS[preset])
    return (x - mean) / std


def convert(ref: nn.Module, family: str, tmp: Path, **kwargs) -> nn.Module:
    torch.save(ref.state_dict(), tmp / "ref.pth")
    out = tmp / "converted.pt"
    convert_checkpoint(tmp / "ref.pth", CFG / f"yolov8-{family}-cls.yaml", out, verbose=False, **kwargs)
    return YOLO(str(out)).model.float().eval()


@pytest.mark.parametrize(("family", "library", "name", "preset"), REFERENCES, ids=[r[2] for r in REFERENCES])
def test_converted_classifier_equals_reference(family: str, library: str, name: str, preset: str, tmp_path: Path):
    ref = reference(library, name)
    model = convert(ref, family, tmp_path)
    x = torch.rand(2, 3, 256, 256)  # MobileViTv2 differs from timm on odd maps (224 -> 7x7), by design
    with torch.no_grad():
        expected = ref(normalise(x, preset))
        _, logits = model(x)
    assert logits.shape == (2, 1000)
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert model.names[0] == "tench" and model.names[999] == "toilet paper"


def test_class_subset_follows_the_dataset_folders(tmp_path: Path):
    ref = reference("timm", "mobilevit_xs")
    model = convert(ref, "mobilevit", tmp_path, classes=IMAGENET10)
    folders = sorted(p.name for p in (IMAGENET10 / "train").iterdir())
    assert list(model.names.values()) == folders
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        full, sub = ref(x), model(x)[1]
    assert torch.allclose(sub, full[:, [IMAGENET_FIRST_TEN.index(f) for f in folders]], atol=1e-5)


@pytest.mark.slow
def test_yolo_classify_val_on_converted_checkpoint_matches_reference(tmp_path: Path):
    """Ultralytics' own classify validator on the checkpoint `yolo-mobilevit convert --classes` wrote, and on its
    ONNX export (one fresh interpreter), scores what the reference scores. The reference's ImageNet head is set to a nearest-class-mean classifier of imagenet10's val
    images (weight 2f, bias -|f|^2), so it is right on every image and any class mix-up shows."""
    from ultralytics.data.augment import classify_transforms

    imgsz = 128
    transform = classify_transforms(imgsz)
    folders = sorted(p.name for p in (IMAGENET10 / "val").iterdir())
    images = [(label, path) for label, f in enumerate(folders) for path in sorted((IMAGENET10 / "val" / f).iterdir())]
    batch = torch.stack(
        [transform(Image.fromarray(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))) for _, p in images]
    )  # read as Ultralytics' dataset reads them
    ref = reference("timm", "mobilevit_xs")
    with torch.no_grad():
        features = ref.forward_head(ref.forward_features(batch), pre_logits=True)  # (N, 384)
        for (label, _), f in zip(images, features):
            row = IMAGENET_FIRST_TEN.index(folders[label])
            ref.head.fc.weight[row], ref.head.fc.bias[row] = 2 * f, -(f * f).sum()
        columns = [IMAGENET_FIRST_TEN.index(f) for f in folders]
        predicted = ref(batch)[:, columns].argmax(1).tolist()
    assert predicted == [label for label, _ in images]

    torch.save(ref.state_dict(), tmp_path / "ref.pth")
    converted = tmp_path / "xs-imagenet10.pt"
    cli = YOLO_BIN.with_name("yolo-mobilevit")
    run([str(cli), "convert", str(tmp_path / "ref.pth"), "--cfg", str(CFG / "yolov8-mobilevit-cls.yaml"),
         "-o", str(converted), "--classes", str(IMAGENET10)], cwd=tmp_path)  # fmt: skip
    out = python(
        f"""
        from ultralytics import YOLO
        onnx = YOLO({str(converted)!r}).export(format="onnx", imgsz={imgsz}, device="cpu")
        for model in ({str(converted)!r}, onnx):  # the .pt, and its ONNX export (one output: class probabilities)
            metrics = YOLO(model, task="classify").val(data={str(IMAGENET10)!r}, imgsz={imgsz}, batch=4, device="cpu",
                                                       project={str(tmp_path)!r}, name="val", plots=False)
            print("TOP1", model, metrics.top1)
        """,
        cwd=tmp_path,
    )
    top1 = {line.split()[1]: float(line.split()[2]) for line in out.stdout.splitlines() if line.startswith("TOP1")}
    assert list(top1.values()) == [1.0, 1.0] and str(converted.with_suffix(".onnx")) in top1, top1


def test_head_structure_mismatch_is_refused(tmp_path: Path):
    ref = reference("timm", "mobilevit_xs")  # has a final 1x1 conv (timm final_conv)
    torch.save(ref.state_dict(), tmp_path / "ref.pth")
    text = (CFG / "yolov8-mobilevit-cls.yaml").read_text()
    cfg = tmp_path / "yolov8n-mobilevit-noconv-cls.yaml"
    cfg.write_text(text.replace("Classifier, [384, nc]]", "Classifier, [96, nc, 0, silu, 0.0, False]]"))
    with pytest.raises(ConversionError, match=r"layer 6 Classifier lacks a final 1x1 conv but the checkpoint's"):
        convert_checkpoint(tmp_path / "ref.pth", cfg, None, verbose=False)


def test_no_head_keeps_the_classifier_initialized(tmp_path: Path):
    ref = reference("torchvision", "mobilenet_v2")
    torch.save(ref.state_dict(), tmp_path / "ref.pth")
    report = convert_checkpoint(
        tmp_path / "ref.pth", CFG / "yolov8-mobilenetv2-cls.yaml", None, head=False, verbose=False
    )
    assert not any(k.startswith("model.19.") for k in report.loaded)  # the Classifier row
    assert "classifier.1.weight" in report.unused_source
    with pytest.raises(ConversionError, match="classes not in ImageNet-1k: not_a_class"):
        convert_checkpoint(tmp_path / "ref.pth", CFG / "yolov8-mobilenetv2-cls.yaml", None, classes=["not_a_class"])
