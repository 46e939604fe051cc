"""Weight conversion: bit-identical transfer, refusals that name tensors and shapes, cvnets names, the CLI, and
`yolo train pretrained=` picking the converted backbone up."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run, train_args, yolo
from mobilevit_refs import backbone_counts, config, reference, save_reference
from ultralytics.nn.tasks import DetectionModel, load_checkpoint

from yolo_mobilevit.convert import ConversionError, convert_checkpoint, formats, load_source, map_weights, weighted_rows
from yolo_mobilevit.convert.core import build_model, detect_format
from yolo_mobilevit.convert.mobilevit import cvnets_to_timm
from yolo_mobilevit.modules.layers import BatchNorm2d


@functools.cache
def built(cfg: Path) -> torch.nn.Module:
    return build_model(cfg)


def check_fit(source: Path, cfg: Path, strict: bool = True):
    """convert_checkpoint's checks without building the model again for each test."""
    state_dict, origin = load_source(source)
    return map_weights(state_dict, built(cfg), detect_format(state_dict), strict=strict, label=origin)[1]


def _backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{i}.{k}": v for i, m in weighted_rows(model) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_backbone_is_bit_identical(name: str, tmp_path: Path) -> None:
    output = tmp_path / "converted.pt"
    report = convert_checkpoint(save_reference(name, tmp_path), config(name), output, verbose=False)
    model, ckpt = load_checkpoint(output)
    source = reference(name).state_dict()
    backbone = _backbone_state(model)
    assert set(report.loaded) == set(backbone) and not report.unloaded_backbone
    for target, src in report.loaded.items():
        assert backbone[target].dtype == source[src].dtype and torch.equal(backbone[target], source[src]), target
    expected_unused = {"head.fc.weight", "head.fc.bias"} | {k for k in source if k.startswith("final_conv.")}
    assert set(report.unused_source) == expected_unused
    assert ckpt["yolo_mobilevit"]["format"] == ("timm-mobilevit" if name == "mobilevit_xxs" else "timm-mobilevitv2")


def test_norms_survive_ultralytics_rebuild(tmp_path: Path) -> None:
    """`yolo train` rebuilds the model from the YAML (initialize_weights) and then loads the checkpoint."""
    output = tmp_path / "converted.pt"
    convert_checkpoint(save_reference("mobilevitv2_050", tmp_path), config("mobilevitv2_050"), output, verbose=False)
    weights, _ = load_checkpoint(output)
    rebuilt = DetectionModel(weights.yaml, verbose=False)
    rebuilt.load(weights, verbose=False)
    bns = [m for _, row in weighted_rows(rebuilt) for m in row.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(type(m) is BatchNorm2d and m.eps == 1e-5 and m.momentum == 0.1 for m in bns)
    gns = [m for _, row in weighted_rows(rebuilt) for m in row.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert gns and all(m.eps == 1e-5 for m in gns)
    source = reference("mobilevitv2_050").state_dict()
    assert torch.equal(rebuilt.state_dict()["model.5.blocks.0.norm.weight"], source["stages.4.1.norm.weight"])


def test_wrong_variant_is_refused_naming_tensors(tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as err:
        check_fit(save_reference("mobilevit_xs", tmp_path), config("mobilevit_xxs"))
    message = str(err.value)
    assert "does not fit" in message and "shapes differ" in message
    # stage 0 of XS is 16 -> 32 with expansion 4; XXS's is 16 -> 16 with expansion 2
    assert re.search(
        r"model\.1\.blocks\.0\.expand\.conv\.weight <- stages\.0\.0\.conv1_1x1\.conv\.weight: "
        r"checkpoint \(64, 16, 1, 1\), config \(32, 16, 1, 1\)",
        message,
    ), message


def test_wrong_family_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="MobileViTv2Stage .*checkpoint is MobileViT v1"):
        check_fit(save_reference("mobilevit_xxs", tmp_path), config("mobilevitv2_050"))


def test_shallower_config_is_refused(tmp_path: Path) -> None:
    cfg = yaml.safe_load(config("mobilevitv2_050").read_text())
    cfg["backbone"][3][3][2] = 1  # layer3 with L=1 instead of 2: the source's second layer has no place
    path = tmp_path / "yolov8-shallow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConversionError, match=r"no place in the config: stages\.2\.1\.transformer\.1\."):
        check_fit(save_reference("mobilevitv2_050", tmp_path), path)
    report = check_fit(save_reference("mobilevitv2_050", tmp_path), path, strict=False)
    assert any(k.startswith("stages.2.1.transformer.1.") for k in report.unused_source)


def _timm_to_cvnets_v2(key: str) -> str:
    """cvnets' MobileViTv2 names, spelled from cvnets' module definitions (independent of the converter)."""
    rules = [
        (r"^stem\.conv\.", "conv_1.block.conv."),
        (r"^stem\.bn\.", "conv_1.block.norm."),
        (r"^head\.fc\.", "classifier.fc."),
        (r"\.conv1_1x1\.conv\.", ".block.exp_1x1.block.conv."),
        (r"\.conv1_1x1\.bn\.", ".block.exp_1x1.block.norm."),
        (r"\.conv2_kxk\.conv\.", ".block.conv_3x3.block.conv."),
        (r"\.conv2_kxk\.bn\.", ".block.conv_3x3.block.norm."),
        (r"\.conv3_1x1\.conv\.", ".block.red_1x1.block.conv."),
        (r"\.conv3_1x1\.bn\.", ".block.red_1x1.block.norm."),
        (r"\.conv_kxk\.conv\.", ".local_rep.0.block.conv."),
        (r"\.conv_kxk\.bn\.", ".local_rep.0.block.norm."),
        (r"\.conv_1x1\.weight", ".local_rep.1.block.conv.weight"),
        (r"\.transformer\.(\d+)\.norm1\.", r".global_rep.\1.pre_norm_attn.0."),
        (r"\.transformer\.(\d+)\.attn\.(qkv_proj|out_proj)\.", r".global_rep.\1.pre_norm_attn.1.\2.block.conv."),
        (r"\.transformer\.(\d+)\.norm2\.", r".global_rep.\1.pre_norm_ffn.0."),
        (r"\.transformer\.(\d+)\.mlp\.fc1\.", r".global_rep.\1.pre_norm_ffn.1.block.conv."),
        (r"\.transformer\.(\d+)\.mlp\.fc2\.", r".global_rep.\1.pre_norm_ffn.3.block.conv."),
        (r"\.conv_proj\.conv\.", ".conv_proj.block.conv."),
        (r"\.conv_proj\.bn\.", ".conv_proj.block.norm."),
    ]
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    key = re.sub(r"^stages\.(\d+)\.", lambda m: f"layer_{int(m.group(1)) + 1}.", key)
    return key


def test_cvnets_v2_names(tmp_path: Path) -> None:
    source = reference("mobilevitv2_050").state_dict()
    n_layers = {2: 2, 3: 4, 4: 3}  # the final GroupNorm is global_rep.L
    cvnets = {}
    for key, value in source.items():
        m = re.match(r"stages\.(\d)\.1\.norm\.(weight|bias)$", key)
        name = f"layer_{int(m[1]) + 1}.1.global_rep.{n_layers[int(m[1])]}.{m[2]}" if m else _timm_to_cvnets_v2(key)
        cvnets[name] = value
        assert cvnets_to_timm(name) == key
    path = tmp_path / "cvnets_v2.pt"
    torch.save(cvnets, path)
    report = check_fit(path, config("mobilevitv2_050"))
    assert report.format == "cvnets-mobilevitv2" and not report.unloaded_backbone
    assert report.unused_source == ["classifier.fc.weight", "classifier.fc.bias"]


def test_cvnets_v1_names_per_reference() -> None:
    """Reference 1.4's cvnets -> timm table, one name per rule."""
    pairs = {
        "conv_1.block.conv.weight": "stem.conv.weight",
        "conv_1.block.norm.running_var": "stem.bn.running_var",
        "layer_2.1.block.exp_1x1.block.conv.weight": "stages.1.1.conv1_1x1.conv.weight",
        "layer_3.0.block.red_1x1.block.norm.bias": "stages.2.0.conv3_1x1.bn.bias",
        "layer_3.1.local_rep.conv_3x3.block.norm.weight": "stages.2.1.conv_kxk.bn.weight",
        "layer_3.1.local_rep.conv_1x1.block.conv.weight": "stages.2.1.conv_1x1.weight",
        "layer_4.1.global_rep.3.pre_norm_mha.0.weight": "stages.3.1.transformer.3.norm1.weight",
        "layer_4.1.global_rep.3.pre_norm_mha.1.qkv_proj.weight": "stages.3.1.transformer.3.attn.qkv.weight",
        "layer_4.1.global_rep.3.pre_norm_mha.1.out_proj.bias": "stages.3.1.transformer.3.attn.proj.bias",
        "layer_4.1.global_rep.3.pre_norm_ffn.0.bias": "stages.3.1.transformer.3.norm2.bias",
        "layer_4.1.global_rep.3.pre_norm_ffn.1.weight": "stages.3.1.transformer.3.mlp.fc1.weight",
        "layer_4.1.global_rep.3.pre_norm_ffn.4.weight": "stages.3.1.transformer.3.mlp.fc2.weight",
        "layer_4.1.global_rep.4.weight": "stages.3.1.norm.weight",
        "layer_5.1.conv_proj.block.conv.weight": "stages.4.1.conv_proj.conv.weight",
        "layer_5.1.fusion.block.norm.running_mean": "stages.4.1.conv_fusion.bn.running_mean",
        "conv_1x1_exp.block.conv.weight": "final_conv.conv.weight",
    }
    assert {k: cvnets_to_timm(k) for k in pairs} == pairs


def test_features_only_checkpoint_and_swap_rb(tmp_path: Path) -> None:
    """timm features_only names (stages_N) are accepted; swap_rb reverses the stem's input channels."""
    source = reference("mobilevitv2_050").state_dict()
    path = tmp_path / "features.pth"
    torch.save({"state_dict": {k.replace("stages.", "stages_", 1): v for k, v in source.items()}}, path)
    output = tmp_path / "out.pt"
    convert_checkpoint(path, config("mobilevitv2_050"), output, swap_rb=True, verbose=False)
    model, _ = load_checkpoint(output)
    assert torch.equal(model.state_dict()["model.0.conv.weight"], source["stem.conv.weight"].flip(1))


def test_registry_lists_mobilevit_formats() -> None:
    assert {"timm-mobilevit", "timm-mobilevitv2", "cvnets-mobilevit", "cvnets-mobilevitv2"} <= set(formats())


def test_unreadable_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no such file"):
        convert_checkpoint(tmp_path / "missing.pth", config("mobilevitv2_050"), verbose=False)


@pytest.mark.slow
def test_cli_convert_then_yolo_train(tmp_path: Path) -> None:
    source = save_reference("mobilevitv2_050", tmp_path)
    output = tmp_path / "converted.pt"
    exe = Path(sys.executable).with_name("yolo-mobilevit")
    cfg = REPO / "cfg" / "yolov8n-mobilevitv2-050.yaml"  # the scale letter picks `n` without a warning
    proc = run([str(exe), "convert", str(source), "--cfg", str(cfg), "-o", str(output)], cwd=tmp_path)
    tensors, params = backbone_counts("mobilevitv2_050")
    assert f"loaded {tensors} tensors ({params:,} parameters)" in proc.stdout, proc.stdout
    refused = run_refusal(exe, tmp_path)
    assert refused.returncode == 2 and "shapes differ" in refused.stderr
    proc = yolo(*train_args(cfg, tmp_path), f"pretrained={output}", cwd=tmp_path)
    log = proc.stdout + proc.stderr
    match = re.search(r"Transferred (\d+)/(\d+) items from pretrained weights", log)
    assert match, log[-3000:]
    model, _ = load_checkpoint(output)
    assert int(match[1]) >= len(_backbone_state(model)), match[0]
    trained, _ = load_checkpoint(tmp_path / "train" / "weights" / "last.pt")
    bns = [m for _, row in weighted_rows(trained) for m in row.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)


def run_refusal(exe: Path, tmp_path: Path):
    import subprocess

    source = save_reference("mobilevit_xs", tmp_path)
    cfg = REPO / "cfg" / "yolov8-mobilevit-xxs.yaml"
    args = [str(exe), "convert", str(source), "--cfg", str(cfg), "-o", str(tmp_path / "no.pt")]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup or connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", ["mobilevit_xs", "timm/mobilevitv2_050.cvnets_in1k", "torchvision:mobilenet_v2"])
def test_model_name_offline_is_refused_naming_the_switch(name: str, no_network, monkeypatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(ConversionError, match=rf"{re.escape(name)}: no such file\..*YOLO_OFFLINE is set"):
        load_source(name)


@pytest.mark.parametrize(("name", "library", "attribute"), [
    ("mobilevit_xs", "timm", "create_model"),
    ("torchvision:mobilenet_v2", "torchvision.models", "get_model"),
])  # fmt: skip
def test_model_name_download_failure_is_short_and_named(name: str, library: str, attribute: str, monkeypatch) -> None:
    """Online, the hub download runs under the plugin's short socket timeout, and its failure names the model."""
    import importlib
    import socket
    import urllib.error

    from yolo_mobilevit.weights_store import HTTP_TIMEOUT

    timeouts = []

    def unreachable(*args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("simulated: network unreachable")

    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setattr(importlib.import_module(library), attribute, unreachable)
    before = socket.getdefaulttimeout()
    with pytest.raises(ConversionError, match=re.escape(name.removeprefix("torchvision:")) + ".*network unreachable"):
        load_source(name)
    assert timeouts == [HTTP_TIMEOUT] and socket.getdefaulttimeout() == before


def test_cli_convert_by_name_offline_exits_with_the_switch(tmp_path: Path) -> None:
    import subprocess

    exe = Path(sys.executable).with_name("yolo-mobilevit")
    args = [str(exe), "convert", "mobilevit_xs", "--cfg", str(config("mobilevit_xs")), "-o", str(tmp_path / "x.pt")]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "yolo-mobilevit convert: mobilevit_xs: no such file." in proc.stderr and "YOLO_OFFLINE is set" in proc.stderr
    assert not (tmp_path / "x.pt").exists()
