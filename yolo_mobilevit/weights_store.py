"""The weights store: where the reference weights a config names (``backbone_weights``) are found and kept.

A name (``timm/mobilevit_xs.cvnets_in1k``, ``torchvision/mobilenet_v3_large.IMAGENET1K_V2``,
``mobileformer/mobile_former_151m``, ``ultralytics/yolov8n-cls.pt``, a file path or an ``http(s)://`` URL) resolves to
a local file (:func:`fetch`): the file itself for a path; else the cache, the mirror, then the network unless
``YOLO_OFFLINE`` is set (:func:`offline`). Every connection attempt times out after :data:`HTTP_TIMEOUT`, so a dead
network fails fast instead of hanging training.

Weights are cached as fetched under ``SETTINGS["weights_dir"]/yolo_mobilevit/`` with the layout a mirror uses
(``timm/mobilevit_xs.cvnets_in1k.safetensors``), so a filled cache folder can be copied to machines without internet
and named by ``YOLO_MOBILEVIT_WEIGHTS_MIRROR`` (a folder or an ``http(s)://`` base). Nothing here reads the files:
converting them is :mod:`yolo_mobilevit.convert`'s job.
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
from pathlib import Path
from typing import BinaryIO

WEIGHTS_KEY = "backbone_weights"  # the top-level model-YAML key that names a config's weights
MIRROR_ENV = "YOLO_MOBILEVIT_WEIGHTS_MIRROR"
EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")  # tried in this order for a name without one
HTTP_TIMEOUT = 10.0  # seconds per connection attempt; a dead network fails fast instead of hanging training
CACHE_FOLDER = "yolo_mobilevit"

_TIMM_FILES = (("model.safetensors", ".safetensors"), ("pytorch_model.bin", ".bin"))  # in a timm Hugging Face repo


class WeightsUnavailable(RuntimeError):
    """The weights a config names are in neither the cache nor the mirror, and the network could not provide them."""


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


def cached(relative: str) -> Path | None:
    """The cached file of ``relative`` (:func:`relative_name`), with any of :data:`EXTENSIONS` when it has none."""
    return next((p for name in _candidates(relative) if (p := cache_dir() / name).is_file()), None)


def offline() -> bool:
    """Whether ``YOLO_OFFLINE`` (Ultralytics' switch) turns downloads off."""
    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes")


def _store(stream: BinaryIO, dest: Path) -> Path:
    """``stream``'s bytes -> ``dest`` through a temporary file in the same folder (renamed when complete, so a reader
    never sees half a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(stream, f, length=1 << 20)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _download(url: str, dest: Path) -> Path:
    """``url`` -> ``dest`` (:func:`_store`); HTTP errors propagate."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        return _store(response, dest)


def _copy(src: Path, dest: Path) -> Path:
    with src.open("rb") as f:
        return _store(f, dest)


def from_mirror(relative: str) -> Path | None:
    """``relative``'s file copied from the mirror (``$YOLO_MOBILEVIT_WEIGHTS_MIRROR``, a folder or an HTTP base) into
    the cache; None without a mirror or when it lacks the file."""
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
            (f"https://huggingface.co/timm/{name}/resolve/main/{file}", f"{relative}{ext}") for file, ext in _TIMM_FILES
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

            for file, ext in _TIMM_FILES:
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
    found = cached(relative)
    if found is not None:
        return found
    problem = "not in the cache"
    try:
        found = from_mirror(relative)
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


__all__ = [
    "CACHE_FOLDER",
    "EXTENSIONS",
    "HTTP_TIMEOUT",
    "MIRROR_ENV",
    "WEIGHTS_KEY",
    "WeightsUnavailable",
    "cache_dir",
    "cached",
    "fetch",
    "from_mirror",
    "offline",
    "relative_name",
]
