"""Reference weights straight into plugin configs, without a separate ``yolo-mobilevit convert`` step.

- ``pretrained=FILE`` / ``YOLO(cfg).load(FILE)`` with any checkpoint the converter reads (timm, torchvision, ml-cvnets,
  official Mobile-Former; ``.pth``/``.pt``/``.bin``/``.safetensors``; bare or wrapped state dicts): Ultralytics'
  ``torch_safe_load`` returns a :class:`ReferenceWeights` stand-in instead of failing on a bare state dict, and
  ``BaseModel.load`` converts it onto the model being built with :mod:`yolo_mobilevit.convert` (refusing a mismatch
  as ``convert`` does). Ultralytics checkpoints take Ultralytics' own path, unchanged.
- Pretrained by default: a config names its reference weights in the top-level YAML key ``backbone_weights``
  (``timm/mobilevit_xs.cvnets_in1k``, ``torchvision/mobilenet_v3_large.IMAGENET1K_V2``, a file path or a URL; null for
  none). When training builds a plugin config from its YAML with Ultralytics' default ``pretrained=True`` (and not
  ``resume``), :func:`load_default_weights` finds them (cache, then the mirror, then the network), converts them and
  loads them into the backbone rows. Offline with an empty cache it warns once and training starts from scratch.

Weights are cached as fetched under ``SETTINGS["weights_dir"]/yolo_mobilevit/`` with the layout a mirror uses
(``timm/mobilevit_xs.cvnets_in1k.safetensors``), so a filled cache folder can be copied to machines without internet
and named by ``YOLO_MOBILEVIT_WEIGHTS_MIRROR`` (a folder or an ``http(s)://`` base). Conversion itself takes
milliseconds and runs at every build, so one cached file serves every config with that backbone (detect, seg, cls).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_KEY = "backbone_weights"
MIRROR_ENV = "YOLO_MOBILEVIT_WEIGHTS_MIRROR"
EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")  # tried in this order for a name without one
HTTP_TIMEOUT = 10.0  # seconds per connection attempt; a dead network fails fast instead of hanging training
CACHE_FOLDER = "yolo_mobilevit"

_LOADED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models that received weights through BaseModel.load
_WARNED: set[str] = set()


class WeightsUnavailable(RuntimeError):
    """The weights a config names are in neither the cache nor the mirror, and the network could not provide them."""


class ReferenceWeights(nn.Module):
    """What ``load_checkpoint`` returns for a reference (non-Ultralytics) checkpoint: the flat source state dict
    and where it came from, converted when ``BaseModel.load`` receives it. Holds no parameters of its own."""

    def __init__(self, state_dict: dict[str, torch.Tensor], origin: str) -> None:
        super().__init__()
        self.source_state_dict = state_dict
        self.origin = origin
        self.yaml: dict = {}


# ---- is a file a reference checkpoint? --------------------------------------------------------------------------


def is_reference_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a reference checkpoint (a tensor state dict, possibly wrapped) rather than an Ultralytics
    one. ``.pth``/``.bin``/``.safetensors`` always are (Ultralytics only reads ``.pt``); a ``.pt`` is when its pickle
    refers to no ``ultralytics`` class. Read without unpickling."""
    from .checkpoints import _pickle_bytes

    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in EXTENSIONS:
        return False
    if path.suffix.lower() != ".pt":
        return True
    data = _pickle_bytes(path)
    return data is not None and b"ultralytics." not in data


def read_reference(path: str | Path) -> ReferenceWeights:
    """The :class:`ReferenceWeights` of a reference checkpoint file (wrappers and ``module.`` prefixes removed)."""
    from .convert import load_source

    state_dict, origin = load_source(path)
    return ReferenceWeights(state_dict, origin)


def make_torch_safe_load(original: Any) -> Any:
    """Wrap Ultralytics' ``torch_safe_load(weight, ...) -> (ckpt, file)``: a reference checkpoint comes back as
    ``{"model": ReferenceWeights}`` (so ``load_checkpoint`` and ``pretrained=`` accept it); anything else is read by
    Ultralytics as before."""

    def torch_safe_load(weight: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(weight, (str, Path)) and is_reference_checkpoint(weight):
            return {"model": read_reference(weight), "train_args": {}}, str(weight)
        return original(weight, *args, **kwargs)

    return torch_safe_load


# ---- converting onto a model ------------------------------------------------------------------------------------


def apply_reference(
    model: nn.Module, weights: ReferenceWeights, swap_rb: bool | None = None, verbose: bool = True
) -> int:
    """Convert ``weights`` onto ``model`` (an Ultralytics ``nn`` model of a plugin config) and load them; returns
    the number of tensors loaded. A ``Classifier`` head takes the source's classifier when the class counts agree,
    and is otherwise left initialized (as Ultralytics' transfer skips a head of another ``nc``).

    Raises :class:`yolo_mobilevit.convert.ConversionError` when the checkpoint does not fit the backbone."""
    from .convert import map_weights
    from .convert.core import classifier_row, decide_swap_rb, detect_format, swap_stem_channels

    source = weights.source_state_dict
    fmt = detect_format(source)
    head = False
    found = classifier_row(model)
    if found is not None and fmt.head is not None:
        fc = source.get(f"{fmt.head.fc}.weight")
        head = fc is not None and fc.shape[0] == found[1].fc.out_features
    mapped, report = map_weights(source, model, fmt, strict=True, label=weights.origin, head=head)
    swap, why = decide_swap_rb(fmt, swap_rb)
    if swap:
        mapped = swap_stem_channels(mapped, model)
    reference = next(iter(model.parameters()), None)
    model.load_state_dict(
        {k: v.to(reference.device if reference is not None else "cpu") for k, v in mapped.items()}, strict=False
    )
    if verbose:
        from ultralytics.utils import LOGGER

        extra = f"; {why}" if swap else ""
        if found is not None and not head:
            extra += "; classifier left initialized (other class count)"
        LOGGER.info(
            f"yolo-mobilevit: loaded {len(mapped)} backbone tensors ({report.loaded_params:,} parameters) from "
            f"{weights.origin} ({fmt.name}){extra}"
        )
    return len(mapped)


def make_load(original: Any) -> Any:
    """Wrap Ultralytics' ``BaseModel.load(weights)``: :class:`ReferenceWeights` (alone or as a checkpoint's
    ``model``) are converted onto the model; anything else is Ultralytics' transfer. Either way the model is marked
    as having received weights, so :func:`load_default_weights` leaves it alone."""

    def load(self: nn.Module, weights: Any, *args: Any, **kwargs: Any) -> Any:
        ref = weights.get("model") if isinstance(weights, dict) else weights
        _LOADED.add(self)
        if isinstance(ref, ReferenceWeights):
            apply_reference(self, ref)
            return self
        return original(self, weights, *args, **kwargs)

    return load


def received_weights(model: nn.Module) -> bool:
    """Whether ``model`` got weights through ``BaseModel.load`` (``pretrained=``, ``.load()``, a ``.pt`` model)."""
    return model in _LOADED


# ---- finding a config's weights ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where fetched reference weights are kept: ``SETTINGS["weights_dir"]/yolo_mobilevit``."""
    from ultralytics.utils import SETTINGS

    return Path(SETTINGS["weights_dir"]) / CACHE_FOLDER


def relative_name(spec: str) -> str:
    """The path of ``spec``'s file inside the cache and a mirror, without extension for library names:
    ``timm/mobilevit_xs.cvnets_in1k``, ``torchvision/mobilenet_v2.IMAGENET1K_V2``; a URL's file name."""
    if spec.startswith(("http://", "https://")):
        return spec.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    from .families import weight_libraries

    library, _, name = spec.partition("/")  # the families' weights libraries, and Ultralytics' own classifiers
    if library not in (*weight_libraries(), "ultralytics") or not name or "/" in name:
        raise ValueError(
            f"{WEIGHTS_KEY}: {spec!r} is not a weights name; expected 'timm/<model>.<tag>', "
            "'torchvision/<model>.<WEIGHTS>', 'mobileformer/<model>', a file path or an http(s) URL"
        )
    return spec


def _candidates(relative: str) -> list[str]:
    return [relative] if relative.lower().endswith(EXTENSIONS) else [relative + ext for ext in EXTENSIONS]


def _cached(relative: str) -> Path | None:
    return next((p for name in _candidates(relative) if (p := cache_dir() / name).is_file()), None)


def offline() -> bool:
    """Whether ``YOLO_OFFLINE`` (Ultralytics' switch) turns downloads off."""
    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes")


def _download(url: str, dest: Path) -> Path:
    """``url`` -> ``dest`` through a temporary file in the same folder (renamed when complete, so a reader never
    sees half a file). HTTP errors propagate."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(response, f, length=1 << 20)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return dest


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _from_mirror(relative: str) -> Path | None:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return None
    for name in _candidates(relative):
        if mirror.startswith(("http://", "https://")):
            try:
                return _download(f"{mirror.rstrip('/')}/{name}", cache_dir() / name)
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    continue
                raise
        elif (Path(mirror) / name).is_file():
            return _copy(Path(mirror) / name, cache_dir() / name)
    return None


def _network_sources(spec: str, relative: str) -> list[tuple[str, str]]:
    """``[(url, cache file name), ...]`` to try for ``spec``, in order."""
    if spec.startswith(("http://", "https://")):
        return [(spec, relative)]
    library, _, name = spec.partition("/")
    if library == "timm":
        return [
            (f"https://huggingface.co/timm/{name}/resolve/main/{file}", f"{relative}{ext}")
            for file, ext in (("model.safetensors", ".safetensors"), ("pytorch_model.bin", ".bin"))
        ]
    if library == "torchvision":
        from torchvision.models import get_model_weights

        model, _, tag = name.partition(".")
        try:
            url = get_model_weights(model)[tag or "DEFAULT"].url
        except (KeyError, ValueError) as e:
            raise WeightsUnavailable(f"torchvision has no weights {name!r} ({e})") from e
        return [(url, f"{relative}.pth")]
    # mobileformer: the official release files are not on a stable URL; use the mirror or the cache. ultralytics:
    # its own download (yolo_mobilevit.tools.pretraining.find_classifier)
    return []


def _check_reachable(url: str) -> None:
    """Raise OSError unless ``url``'s host accepts a TCP connection within ``HTTP_TIMEOUT``, name lookup included
    (``getaddrinfo`` has no timeout of its own, and a request to an unreachable host may hang instead of failing)."""
    parts = urllib.parse.urlsplit(url)
    address = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    outcome: list[OSError | None] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=HTTP_TIMEOUT).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(HTTP_TIMEOUT)
    if not outcome:
        raise TimeoutError(f"{address[0]}:{address[1]} did not answer within {HTTP_TIMEOUT:.0f} s")
    if outcome[0] is not None:
        raise outcome[0]


def _from_network(spec: str, relative: str) -> Path:
    library, _, name = spec.partition("/")
    sources = _network_sources(spec, relative)
    if not sources:
        raise WeightsUnavailable(f"{spec} has no download location")
    _check_reachable(sources[0][0])
    if library == "timm":
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            pass
        else:
            import huggingface_hub.errors as hf_errors

            for file, ext in (("model.safetensors", ".safetensors"), ("pytorch_model.bin", ".bin")):
                try:
                    path = hf_hub_download(repo_id=f"timm/{name}", filename=file, etag_timeout=HTTP_TIMEOUT)
                except hf_errors.EntryNotFoundError:
                    continue
                return _copy(Path(path), cache_dir() / f"{relative}{ext}")
    last: Exception | None = None
    for url, file in sources:
        try:
            return _download(url, cache_dir() / file)
        except urllib.error.HTTPError as e:
            last = e
            if e.code != 404:
                break
    raise WeightsUnavailable(f"could not download {spec}: {last}")


def fetch(spec: str, network: bool = True) -> Path:
    """The local file of the weights ``spec`` names: the file itself for a path; else the cache, the mirror
    (``$YOLO_MOBILEVIT_WEIGHTS_MIRROR``) or, unless ``network`` is False or ``YOLO_OFFLINE`` is set, a download
    (timm names through huggingface_hub when installed, torchvision names from torchvision's URL, plain HTTP with a
    short timeout otherwise), which is then cached.

    Raises :class:`WeightsUnavailable` saying where it looked and how to provide the file."""
    path = Path(spec).expanduser()
    if not spec.startswith(("http://", "https://")) and (path.is_file() or path.suffix.lower() in EXTENSIONS):
        if path.is_file():
            return path
        raise WeightsUnavailable(f"{WEIGHTS_KEY}: {spec} is not a file")
    relative = relative_name(spec)
    found = _cached(relative)
    if found is not None:
        return found
    problem = "not in the cache"
    try:
        found = _from_mirror(relative)
        if found is not None:
            return found
        if os.environ.get(MIRROR_ENV):
            problem += f" nor in the mirror {os.environ[MIRROR_ENV]}"
        if not network or offline():
            problem += ", and downloads are off" + (" (YOLO_OFFLINE)" if offline() else "")
        else:
            return _from_network(spec, relative)
    except WeightsUnavailable as e:
        problem += f"; {e}"
    except (OSError, urllib.error.URLError, ValueError, RuntimeError) as e:  # network down, DNS, timeouts, hub errors
        problem += f"; fetching failed ({type(e).__name__}: {e})"
    files = " or ".join(_candidates(relative)[:2])
    raise WeightsUnavailable(
        f"{spec}: {problem}. Put the file at {cache_dir() / _candidates(relative)[0]} (or in a folder / URL named by "
        f"{MIRROR_ENV}, as {files}), or convert it yourself: yolo-mobilevit convert FILE --cfg CFG -o W.pt, then "
        "train with pretrained=W.pt"
    )


def load_default_weights(model: nn.Module, network: bool = True) -> int | None:
    """Load the reference weights ``model``'s YAML names (``backbone_weights``) into its backbone rows.

    Returns the number of tensors loaded, or None when the YAML names none or they are unavailable (then one warning
    per weights name says where to put them, and the model keeps its initialization). A checkpoint that does not fit
    the backbone raises, as ``pretrained=FILE`` does."""
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils import LOGGER

    spec = (getattr(model, "yaml", None) or {}).get(WEIGHTS_KEY)
    if not spec:
        return None
    try:
        path = fetch(str(spec), network=network)
    except WeightsUnavailable as e:
        if str(spec) not in _WARNED:
            _WARNED.add(str(spec))
            LOGGER.warning(f"yolo-mobilevit: {e}. Training the backbone from scratch.")
        return None
    if is_reference_checkpoint(path):
        loaded = apply_reference(model, read_reference(path), verbose=False)
        LOGGER.info(f"yolo-mobilevit: {WEIGHTS_KEY} {spec}: loaded {loaded} backbone tensors from {path}")
        return loaded
    weights, _ = load_checkpoint(path)  # a converted Ultralytics checkpoint someone put in the cache
    model.load(weights)
    LOGGER.info(f"yolo-mobilevit: {WEIGHTS_KEY} {spec}: transferred weights from {path}")
    return len(weights.state_dict())


def _trains_from_yaml(trainer: Any) -> bool:
    model = getattr(trainer.args, "model", None)
    return isinstance(model, (str, Path)) and str(model).lower().endswith((".yaml", ".yml"))


def make_setup_model(original: Any) -> Any:
    """Wrap Ultralytics' ``BaseTrainer.setup_model()``: after the model is built, a plugin config trained from its
    YAML with ``pretrained=True`` (Ultralytics' default), not resumed and given no other weights gets the weights its
    ``backbone_weights`` names. Under DDP rank 0 fetches first and the other ranks then read its cache."""

    def setup_model(self: Any) -> Any:
        ckpt = original(self)
        model = getattr(self, "model", None)
        if (
            isinstance(model, nn.Module)
            and self.args.pretrained is True
            and not getattr(self, "resume", False)
            and not self.args.resume
            and _trains_from_yaml(self)
            and not received_weights(model)
        ):
            from ultralytics.utils import LOCAL_RANK, RANK
            from ultralytics.utils.torch_utils import torch_distributed_zero_first

            with torch_distributed_zero_first(LOCAL_RANK):
                load_default_weights(model, network=RANK in {-1, 0})
        return ckpt

    return setup_model


__all__ = [
    "MIRROR_ENV",
    "WEIGHTS_KEY",
    "ReferenceWeights",
    "WeightsUnavailable",
    "apply_reference",
    "cache_dir",
    "fetch",
    "is_reference_checkpoint",
    "load_default_weights",
    "make_load",
    "make_setup_model",
    "make_torch_safe_load",
]
