"""Reference weights without a convert step: pretrained=FILE / .load(FILE) in every format, the configs' default
weights through the cache and a mirror (folder and HTTP), offline behaviour, and the colour order per source."""

from __future__ import annotations

import functools
import http.server
import re
import threading
import typing
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import CFG, dataset_yaml, python, seed_fonts, train_args, yolo
from mobilevit_refs import backbone_counts, features_only, randomize_norms, reference, rel_err, timm_p3_p5
from torch import nn

from yolo_mobilevit import pretrained, weights_store
from yolo_mobilevit.convert import ConversionError, convert_checkpoint
from yolo_mobilevit.convert.mobilevit import cvnets_to_timm
from yolo_mobilevit.integration import PATCHES, is_patched
from yolo_mobilevit.tools.features import backbone_features

XXS = CFG / "yolov8n-mobilevit-xxs.yaml"
V3S = CFG / "yolov8n-mobilenetv3-small.yaml"
TOL = 1e-5  # fp32; our eval path runs channels-last on the CPU (measured up to 2.5e-6)


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The pretrained-weights rows of the patch table applied (by the start-up hook), the weights cache in a temp
    folder and no mirror; returns the cache folder."""
    import ultralytics.engine.trainer
    import ultralytics.nn.tasks  # noqa: F401  (the start-up hook patches each module as it is imported)

    rows = [p for p in PATCHES if any(step.startswith("yolo_mobilevit.pretrained:") for step in p.steps)]
    assert len(rows) == 3 and all(is_patched(row) for row in rows)
    cache = tmp_path / "cache"
    monkeypatch.setattr(weights_store, "cache_dir", lambda: cache)
    monkeypatch.delenv(weights_store.MIRROR_ENV, raising=False)
    monkeypatch.setattr(pretrained, "_WARNED", set())
    return cache


@functools.cache
def v3_small() -> nn.Module:
    """torchvision mobilenet_v3_small, random weights and BatchNorm statistics, eval."""
    torch.manual_seed(0)
    return randomize_norms(torchvision.models.mobilenet_v3_small(weights=None)).eval()


def v3_small_taps(x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's own P3/P4/P5 of :func:`v3_small` (features 3, 8, 11) from [0, 1] input, ImageNet-normalised."""
    from torchvision.models.feature_extraction import create_feature_extractor

    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    extractor = create_feature_extractor(v3_small(), {"features.3": "P3", "features.8": "P4", "features.11": "P5"})
    return list(extractor((x - mean) / std).values())


def assert_backbone_equals(model: nn.Module, reference_taps) -> None:
    x = torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = backbone_features(model.eval(), x)
        theirs = reference_taps(x)
    for level, theirs_level in zip(("P3", "P4", "P5"), theirs):
        assert ours[level].shape == theirs_level.shape, level
        assert rel_err(ours[level], theirs_level) < TOL, (level, rel_err(ours[level], theirs_level))


def xxs_taps(x: torch.Tensor) -> list[torch.Tensor]:
    return timm_p3_p5(features_only("mobilevit_xxs"), x)


def save(state_dict: dict[str, torch.Tensor], path: Path, wrapper: str) -> Path:
    """``state_dict`` saved bare, under ``state_dict``, under ``model`` with DDP's ``module.`` prefix, or as
    safetensors (by ``wrapper``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if wrapper == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    elif wrapper == "bare":
        torch.save(state_dict, path)
    elif wrapper == "state_dict":
        torch.save({"state_dict": state_dict, "epoch": 3}, path)
    else:
        torch.save({"model": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    return path


WRAPPERS = [("bare", ".pth"), ("state_dict", ".pt"), ("module", ".bin"), ("safetensors", ".safetensors")]


@pytest.mark.parametrize(("wrapper", "suffix"), WRAPPERS, ids=[w for w, _ in WRAPPERS])
def test_load_reference_file_in_every_format(patched: Path, tmp_path: Path, wrapper: str, suffix: str) -> None:
    """YOLO(cfg).load(FILE) converts a timm checkpoint on the fly: P3/P4/P5 equal timm's features_only."""
    from ultralytics import YOLO

    path = save(reference("mobilevit_xxs").state_dict(), tmp_path / f"xxs{suffix}", wrapper)
    assert pretrained.is_reference_checkpoint(path)
    model = YOLO(str(XXS)).load(str(path))
    assert_backbone_equals(model.model, xxs_taps)


def trainer(tmp_path: Path, model: Path, **overrides):
    from ultralytics.models.yolo.detect import DetectionTrainer

    args = {"model": str(model), "data": str(dataset_yaml("coco8")), "device": "cpu", "project": str(tmp_path)}
    return DetectionTrainer(overrides={**args, "name": "t", "exist_ok": True, "plots": False, **overrides})


def test_trainer_pretrained_file_torchvision_and_mismatch(patched: Path, tmp_path: Path) -> None:
    """pretrained=FILE through Ultralytics' own trainer set-up (load_checkpoint + get_model): a torchvision state
    dict converts; a checkpoint of another variant is refused naming the tensors, as `convert` refuses it."""
    path = save(v3_small().state_dict(), tmp_path / "v3s.pth", "bare")
    t = trainer(tmp_path, V3S, pretrained=str(path))
    t.setup_model()
    assert_backbone_equals(t.model, v3_small_taps)

    wrong = save(reference("mobilevit_xxs").state_dict(), tmp_path / "xxs.pth", "bare")
    with pytest.raises(
        ConversionError,
        match=r"xxs.pth \(timm-mobilevit\) does not fit the config: \d+ tensor shapes differ:\n    model\.1\.blocks\.0\.expand\.conv\.weight",
    ):
        trainer(tmp_path, CFG / "yolov8n-mobilevit.yaml", pretrained=str(wrong)).setup_model()


def test_ultralytics_checkpoint_takes_ultralytics_path(patched: Path, tmp_path: Path) -> None:
    """A converted (Ultralytics) checkpoint is not mistaken for a reference one and transfers as before."""
    from ultralytics import YOLO

    source = save(reference("mobilevit_xxs").state_dict(), tmp_path / "xxs.pth", "bare")
    converted = tmp_path / "converted.pt"
    convert_checkpoint(source, XXS, converted, verbose=False)
    assert not pretrained.is_reference_checkpoint(converted)
    model = YOLO(str(XXS)).load(str(converted))
    assert_backbone_equals(model.model, xxs_taps)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: typing.ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        type(self).requests.append(self.path)


@pytest.fixture
def http_folder(tmp_path: Path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Quiet.requests = []
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_default_weights_from_mirror_folder_then_cache(
    patched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """pretrained=True (the default) on a YAML: the config's backbone_weights come from the mirror folder, are
    cached, and a second run finds them in the cache without the mirror."""
    mirror = tmp_path / "mirror"
    wrapper = "safetensors" if suffix == ".safetensors" else "state_dict"
    save(reference("mobilevit_xxs").state_dict(), mirror / f"timm/mobilevit_xxs.cvnets_in1k{suffix}", wrapper)
    monkeypatch.setenv(weights_store.MIRROR_ENV, str(mirror))
    t = trainer(tmp_path, XXS)
    t.setup_model()
    assert_backbone_equals(t.model, xxs_taps)
    assert (patched / f"timm/mobilevit_xxs.cvnets_in1k{suffix}").is_file()

    monkeypatch.delenv(weights_store.MIRROR_ENV)
    t = trainer(tmp_path, XXS)
    t.setup_model()
    assert_backbone_equals(t.model, xxs_taps)


def test_default_weights_from_http_mirror(
    patched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_folder
) -> None:
    """A mirror given as a URL base (an HTTP server on 127.0.0.1): torchvision weights by their documented name."""
    folder, url = http_folder
    save(v3_small().state_dict(), folder / "torchvision/mobilenet_v3_small.IMAGENET1K_V1.pth", "bare")
    monkeypatch.setenv(weights_store.MIRROR_ENV, url)
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # the mirror is used offline too: it is the offline machine's source
    t = trainer(tmp_path, V3S)
    t.setup_model()
    assert_backbone_equals(t.model, v3_small_taps)
    assert "/torchvision/mobilenet_v3_small.IMAGENET1K_V1.pth" in _Quiet.requests


def _warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from ultralytics.utils import LOGGER

    seen: list[str] = []
    monkeypatch.setattr(LOGGER, "warning", lambda msg, *a, **k: seen.append(str(msg)))
    return seen


def test_offline_empty_cache_warns_once_and_keeps_initialization(patched: Path, tmp_path: Path, monkeypatch) -> None:
    from ultralytics import YOLO

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    seen = _warnings(monkeypatch)
    model = YOLO(str(XXS)).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert pretrained.load_default_weights(model) is None
    assert pretrained.load_default_weights(model) is None
    assert len(seen) == 1, seen
    assert str(patched / "timm/mobilevit_xxs.cvnets_in1k.safetensors") in seen[0]
    assert weights_store.MIRROR_ENV in seen[0] and "yolo-mobilevit convert" in seen[0] and "YOLO_OFFLINE" in seen[0]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_failing_network_warns_instead_of_raising(patched: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online but the host is unreachable (a closed port on 127.0.0.1): a warning, no exception, no hang."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    seen = _warnings(monkeypatch)
    model = nn.Module()
    model.yaml = {weights_store.WEIGHTS_KEY: f"http://127.0.0.1:{port}/mobilevit_xxs.pth"}
    assert pretrained.load_default_weights(model) is None
    assert len(seen) == 1 and "fetching failed" in seen[0], seen


@pytest.mark.parametrize(
    ("overrides", "fetches"),
    [({}, True), ({"pretrained": False}, False), ({"resume": True}, False), ({"model": "x.pt"}, False)],
    ids=["default", "pretrained-false", "resume", "checkpoint-model"],
)
def test_setup_model_fetches_only_for_a_fresh_yaml_build(monkeypatch, overrides: dict, fetches: bool) -> None:
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(pretrained, "load_default_weights", lambda model, network=True: calls.append(network))
    args = SimpleNamespace(**{"model": "cfg/yolov8n-mobilevit.yaml", "pretrained": True, "resume": False, **overrides})
    fake = SimpleNamespace(args=args, resume=bool(args.resume), model=None)
    setup = pretrained.make_setup_model(lambda self: setattr(self, "model", nn.Linear(1, 1)))
    setup(fake)
    assert calls == ([True] if fetches else [])


def test_yaml_naming_its_own_weights_file(patched: Path, tmp_path: Path) -> None:
    """A user YAML can name a file path in backbone_weights."""
    import yaml

    weights = save(reference("mobilevit_xxs").state_dict(), tmp_path / "mine.pth", "bare")
    cfg = yaml.safe_load((CFG / "yolov8-mobilevit-xxs.yaml").read_text())
    cfg[weights_store.WEIGHTS_KEY] = str(weights)
    path = tmp_path / "yolov8n-mine.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t = trainer(tmp_path, path)
    t.setup_model()
    assert_backbone_equals(t.model, xxs_taps)


def test_weights_store_stands_apart_from_conversion(tmp_path: Path) -> None:
    """Finding weights (cache, mirror, network) reads none: a fresh interpreter resolves a name from a mirror folder
    with neither torch nor the converter imported."""
    mirror = tmp_path / "mirror"
    (mirror / "timm").mkdir(parents=True)
    (mirror / "timm" / "mobilevit_xxs.cvnets_in1k.pth").write_bytes(b"not read")
    out = python(
        f"""
        import os, sys
        os.environ[{weights_store.MIRROR_ENV!r}] = {str(mirror)!r}
        from yolo_mobilevit import weights_store
        weights_store.cache_dir = lambda: __import__("pathlib").Path({str(tmp_path / "cache")!r})
        print("FOUND", weights_store.fetch("timm/mobilevit_xxs.cvnets_in1k").read_bytes())
        print("IMPORTED", sorted(m for m in ("torch", "yolo_mobilevit.convert") if m in sys.modules))
        """,
        cwd=tmp_path,
    ).stdout
    assert "FOUND b'not read'" in out and "IMPORTED []" in out, out
    assert (tmp_path / "cache" / "timm" / "mobilevit_xxs.cvnets_in1k.pth").is_file()


def test_bad_weights_name_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"backbone_weights: 'mobilevit_xs' is not a weights name"):
        weights_store.relative_name("mobilevit_xs")


# ---- colour order ------------------------------------------------------------------------------------------------

_TIMM_TO_CVNETS_V1 = [  # cvnets v0.1 MobileViT names, spelled from its module definitions (inverse of the converter)
    (r"^stem\.conv\.", "conv_1.block.conv."),
    (r"^stem\.bn\.", "conv_1.block.norm."),
    (r"^final_conv\.conv\.", "conv_1x1_exp.block.conv."),
    (r"^final_conv\.bn\.", "conv_1x1_exp.block.norm."),
    (r"^head\.fc\.", "classifier.fc."),
    (r"\.conv(1_1x1|2_kxk|3_1x1)\.conv\.", lambda m: f".block.{_IR[m[1]]}.block.conv."),
    (r"\.conv(1_1x1|2_kxk|3_1x1)\.bn\.", lambda m: f".block.{_IR[m[1]]}.block.norm."),
    (r"\.conv_kxk\.conv\.", ".local_rep.conv_3x3.block.conv."),
    (r"\.conv_kxk\.bn\.", ".local_rep.conv_3x3.block.norm."),
    (r"\.conv_1x1\.weight", ".local_rep.conv_1x1.block.conv.weight"),
    (r"\.transformer\.(\d+)\.norm1\.", r".global_rep.\1.pre_norm_mha.0."),
    (r"\.transformer\.(\d+)\.attn\.qkv\.", r".global_rep.\1.pre_norm_mha.1.qkv_proj."),
    (r"\.transformer\.(\d+)\.attn\.proj\.", r".global_rep.\1.pre_norm_mha.1.out_proj."),
    (r"\.transformer\.(\d+)\.norm2\.", r".global_rep.\1.pre_norm_ffn.0."),
    (r"\.transformer\.(\d+)\.mlp\.fc1\.", r".global_rep.\1.pre_norm_ffn.1."),
    (r"\.transformer\.(\d+)\.mlp\.fc2\.", r".global_rep.\1.pre_norm_ffn.4."),
    (r"\.conv_(proj|fusion)\.conv\.", lambda m: f".{'fusion' if m[1] == 'fusion' else 'conv_proj'}.block.conv."),
    (r"\.conv_(proj|fusion)\.bn\.", lambda m: f".{'fusion' if m[1] == 'fusion' else 'conv_proj'}.block.norm."),
]
_IR = {"1_1x1": "exp_1x1", "2_kxk": "conv_3x3", "3_1x1": "red_1x1"}


def cvnets_v1_state_dict(name: str = "mobilevit_xxs") -> dict[str, torch.Tensor]:
    source = reference(name).state_dict()
    depth = {2: 2, 3: 4, 4: 3}  # transformer layers per stage: the final LayerNorm is global_rep.L
    out = {}
    for key, value in source.items():
        m = re.match(r"stages\.(\d)\.1\.norm\.(weight|bias)$", key)
        new = key if not m else f"stages.{m[1]}.1.global_rep.{depth[int(m[1])]}.{m[2]}"
        for pattern, replacement in _TIMM_TO_CVNETS_V1:
            new = re.sub(pattern, replacement, new)
        new = re.sub(r"^stages\.(\d+)\.", lambda m: f"layer_{int(m[1]) + 1}.", new)
        assert cvnets_to_timm(new) == key, (key, new)
        out[new] = value
    return out


def test_cvnets_v1_is_swapped_timm_is_not(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """ml-cvnets v0.1 weights (BGR-trained) get the stem's input channels reversed by default, with a message;
    --no-swap-rb (swap_rb=False) keeps them; timm weights (RGB) are kept."""
    from ultralytics.nn.tasks import load_checkpoint

    stem = reference("mobilevit_xxs").state_dict()["stem.conv.weight"]
    cvnets = tmp_path / "cvnets_v1.pt"
    torch.save(cvnets_v1_state_dict(), cvnets)
    timm_file = save(reference("mobilevit_xxs").state_dict(), tmp_path / "timm.pth", "bare")
    cases = [(cvnets, None, True), (cvnets, False, False), (timm_file, None, False), (timm_file, True, True)]
    for i, (source, swap_rb, flipped) in enumerate(cases):
        report = convert_checkpoint(source, XXS, tmp_path / f"out{i}.pt", swap_rb=swap_rb)
        weight = load_checkpoint(tmp_path / f"out{i}.pt")[0].state_dict()["model.0.conv.weight"]
        assert torch.equal(weight, stem.flip(1) if flipped else stem), (source.name, swap_rb)
        assert report.swapped_rb is flipped
    out = capsys.readouterr().out
    assert "cvnets-mobilevit weights expect BGR input; Ultralytics feeds RGB: reversed the stem's input channels" in out


def test_pretrained_file_follows_colour_order(patched: Path, tmp_path: Path) -> None:
    """pretrained=FILE with a cvnets v1 file: the same swap as convert (an RGB image through our model equals the
    timm model fed BGR)."""
    from ultralytics import YOLO

    cvnets = tmp_path / "cvnets_v1.pt"
    torch.save(cvnets_v1_state_dict(), cvnets)
    model = YOLO(str(XXS)).load(str(cvnets))
    assert_backbone_equals(model.model, lambda x: xxs_taps(x.flip(1)))


# ---- the plain CLI ----------------------------------------------------------------------------------------------


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An Ultralytics settings folder whose weights_dir is in tmp_path (never the user's), fonts seeded."""
    import json

    from ultralytics.utils import SETTINGS

    config = tmp_path / "ultralytics-config"
    seed_fonts(config / "Ultralytics")
    (config / "Ultralytics" / "settings.json").write_text(
        json.dumps({**dict(SETTINGS), "weights_dir": str(tmp_path / "weights")})
    )
    return {"YOLO_CONFIG_DIR": str(config), **extra}


def _yolo(args: list[str], tmp_path: Path, env: dict[str, str]):
    return yolo(*args, cwd=tmp_path, env=env)


@pytest.mark.slow
def test_cli_train_fetches_from_http_mirror_once(tmp_path: Path, http_folder) -> None:
    folder, url = http_folder
    save(reference("mobilevit_xxs").state_dict(), folder / "timm/mobilevit_xxs.cvnets_in1k.pth", "bare")
    env = _cli_env(tmp_path, **{weights_store.MIRROR_ENV: url})
    proc = _yolo(train_args(XXS, tmp_path), tmp_path, env)
    log = proc.stdout + proc.stderr
    tensors, _ = backbone_counts("mobilevit_xxs")
    assert f"backbone_weights timm/mobilevit_xxs.cvnets_in1k: loaded {tensors} backbone tensors" in log, log[-3000:]
    assert (tmp_path / "weights/yolo_mobilevit/timm/mobilevit_xxs.cvnets_in1k.pth").is_file()
    requests = list(_Quiet.requests)
    proc = _yolo(train_args(XXS, tmp_path, name="again"), tmp_path, env)
    assert f"loaded {tensors} backbone tensors" in proc.stdout + proc.stderr
    assert _Quiet.requests == requests  # the second run read the cache


@pytest.mark.slow
def test_cli_train_offline_without_cache_warns_once_and_trains(tmp_path: Path) -> None:
    proc = _yolo(train_args(XXS, tmp_path), tmp_path, _cli_env(tmp_path))
    log = proc.stdout + proc.stderr
    count = log.count("Training the backbone from scratch")
    assert count == 1, (count, log[-3000:])
    assert (tmp_path / "train/weights/last.pt").is_file()
