"""The session environment tests/conftest.py sets up: a fresh Ultralytics settings folder with its fonts seeded, the
caller's caches, mirror and switches dropped, and no network access from dataset checks."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import DATASETS, DROPPED_ENV, FONTS, SESSION, clean_environment, dataset_yaml, python

from yolo_mobilevit import weights_store


def test_caller_environment_is_dropped(tmp_path: Path) -> None:
    caller = {
        "PATH": "/usr/bin",
        "YOLO_CONFIG_DIR": "/home/dev/.config",
        weights_store.MIRROR_ENV: "/home/dev/mirror",
        "YOLO_MOBILEVIT_AUTOLOAD": "0",
        "YOLO_MOBILEVIT_DATASETS": "/data",
        "YOLO_VERBOSE": "False",
        "RANK": "3",
        "HF_HUB_CACHE": "/home/dev/hf",
    }
    clean = clean_environment(caller, tmp_path)
    assert clean["PATH"] == "/usr/bin" and clean["YOLO_MOBILEVIT_DATASETS"] == "/data"
    assert clean["YOLO_CONFIG_DIR"] == str(tmp_path / "config") and clean["YOLO_OFFLINE"] == "1"
    assert clean["TORCH_HOME"].startswith(str(tmp_path)) and clean["HF_HOME"].startswith(str(tmp_path))
    for name in (weights_store.MIRROR_ENV, "YOLO_MOBILEVIT_AUTOLOAD", "YOLO_VERBOSE", "RANK", "HF_HUB_CACHE"):
        assert name not in clean, name
    assert not (set(DROPPED_ENV) | {weights_store.MIRROR_ENV}) & set(os.environ)  # this session's own environment


def test_settings_and_caches_are_the_sessions() -> None:
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    assert USER_CONFIG_DIR == SESSION / "config" / "Ultralytics" and os.environ["YOLO_CONFIG_DIR"] == str(
        SESSION / "config"
    )
    assert Path(SETTINGS["weights_dir"]) == SESSION / "weights" and Path(SETTINGS["datasets_dir"]) == DATASETS
    assert weights_store.cache_dir().is_relative_to(SESSION) and not SETTINGS["sync"]


def test_dataset_check_finds_the_seeded_font_without_network(tmp_path: Path) -> None:
    """A fresh interpreter (the environment subprocesses inherit) with every name lookup and connection recorded and
    refused: check_det_dataset finds its font in the session folder and reaches for nothing; a font name that is not
    seeded does reach for the network (the recorder sees it)."""
    out = python(
        f"""
        import socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args[:2])
            raise OSError("network refused by the test")
        socket.getaddrinfo = refuse
        socket.socket.connect = refuse
        from ultralytics.data.utils import check_det_dataset
        from ultralytics.utils import USER_CONFIG_DIR
        from ultralytics.utils.checks import check_font
        attempts.clear()  # 8.4.0 probes DNS once at import (its is_online ignores YOLO_OFFLINE)
        data = check_det_dataset({str(dataset_yaml("coco8"))!r})
        print("NAMES", len(data["names"]), "ATTEMPTS", len(attempts))
        print("FONTS", *[check_font(name) == USER_CONFIG_DIR / name for name in {FONTS!r}], "ATTEMPTS", len(attempts))
        print("UNSEEDED", check_font("NotSeeded.ttf"), "ATTEMPTS", len(attempts) > 0)
        """,
        cwd=tmp_path,
    )
    assert "NAMES 80 ATTEMPTS 0" in out.stdout, out.stdout
    assert "FONTS True True ATTEMPTS 0" in out.stdout, out.stdout
    assert "UNSEEDED None ATTEMPTS True" in out.stdout, out.stdout
