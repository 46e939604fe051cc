"""Small offline datasets for the semantic and depth tasks, in Ultralytics' own formats, written into a folder.

- ``semantic_masks``: coco8-seg as PNG class masks (``masks_dir``), rasterized here with ``cv2.fillPoly`` from the
  polygon labels (independently of Ultralytics' own rasterizer): raw ids are COCO class + 1 with 0 for background,
  ``label_mapping`` maps them to train ids (background last, as Ultralytics' polygon form numbers it), and every
  polygon outline is 255 (ignore), as in PASCAL VOC's masks.
- ``semantic_polygons``: coco8-seg as it is (YOLO polygon labels; Ultralytics' ``PolygonSemanticDataset`` rasterizes
  them on the fly and adds the background class).
- ``synthetic_depth``: SYNTHETIC scenes with known geometric depth (no registry package ships real depth samples):
  a pinhole camera over a textured ground plane, a back wall and a few boxes, ray-cast exactly; 16-bit PNG depth in
  millimetres (``depth_scale: 1000``) under ``depth/`` beside ``images/``.

Usage: ``python tests/task_datasets.py OUT [--source DATASETS]`` (default: ``$YOLO_MOBILEVIT_DATASETS``) writes all three under OUT and prints their YAMLs.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

SPLITS = ("train", "val")
IGNORE = 255
DEPTH_SCALE = 1000  # PNG value 1000 = 1 m (Ultralytics' depth8.yaml)


def _names(source: Path) -> dict[int, str]:
    return yaml.safe_load((source / f"{source.name}.yaml").read_text())["names"]


def _write_yaml(root: Path, name: str, content: dict) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", **content}))
    return path


def _copy_images(source: Path, root: Path) -> None:
    for split in SPLITS:
        shutil.copytree(source / "images" / split, root / "images" / split, dirs_exist_ok=True)


def polygon_mask(label_file: Path, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 raw mask of one YOLO polygon label file: 0 background, class + 1 inside each polygon (larger
    polygons first, so smaller ones stay on top), 255 on every outline."""
    polygons = []
    for line in label_file.read_text().splitlines():
        values = line.split()
        if len(values) < 7:
            continue
        xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * (width, height)
        polygons.append((int(values[0]), np.round(xy).astype(np.int32)))
    polygons.sort(key=lambda p: -cv2.contourArea(p[1].astype(np.float32)))
    mask = np.zeros((height, width), np.uint8)
    for cls, xy in polygons:
        cv2.fillPoly(mask, [xy], cls + 1)
    for _, xy in polygons:
        cv2.polylines(mask, [xy], isClosed=True, color=IGNORE, thickness=1)
    return mask


def semantic_masks(out: Path, source: Path) -> Path:
    """coco8-seg as PNG class masks under ``masks/`` with a ``label_mapping``; returns the dataset YAML."""
    root = out / f"{source.name}-masks"
    _copy_images(source, root)
    names = _names(source)
    background = len(names)
    for split in SPLITS:
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for image in sorted((source / "images" / split).glob("*.jpg")):
            height, width = cv2.imread(str(image)).shape[:2]
            mask = polygon_mask(source / "labels" / split / f"{image.stem}.txt", height, width)
            cv2.imwrite(str(root / "masks" / split / f"{image.stem}.png"), mask)
    mapping = {0: background, **{k + 1: k for k in names}}  # raw id -> train id; 255 stays ignore
    return _write_yaml(
        root,
        root.name,
        {"masks_dir": "masks", "names": {**names, background: "background"}, "label_mapping": mapping},
    )


def semantic_polygons(out: Path, source: Path) -> Path:
    """coco8-seg as it is (polygon labels, no ``masks_dir``); returns the dataset YAML."""
    root = out / f"{source.name}-polygons"
    _copy_images(source, root)
    shutil.copytree(source / "labels", root / "labels", ignore=shutil.ignore_patterns("*.cache"), dirs_exist_ok=True)
    return _write_yaml(root, root.name, {"names": _names(source)})


def _scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One ray-cast scene: (BGR uint8 image, depth in metres along the optical axis)."""
    focal = 0.9 * width
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    # z = 1, so a ray's parameter t is the depth; the principal point sits above the centre (more ground in view)
    rays = np.stack([(u - width / 2) / focal, (v - 0.3 * height) / focal, np.ones_like(u)], -1)
    cam_height, wall = rng.uniform(1.2, 1.8), rng.uniform(6.0, 9.0)
    depth = np.full((height, width), np.inf)
    color = np.zeros((height, width, 3))
    # ground plane y = cam_height (image y points down): checkerboard, 0.5 m squares
    t = np.where(rays[..., 1] > 1e-6, cam_height / np.maximum(rays[..., 1], 1e-6), np.inf)
    hit = t < wall
    x, z = rays[..., 0] * np.minimum(t, wall), np.minimum(t, wall)
    checker = ((np.floor(x / 0.5) + np.floor(z / 0.5)) % 2)[..., None]
    color[hit] = (np.where(checker, [70, 140, 90], [200, 210, 190]) * np.ones_like(color))[hit]
    depth[hit] = t[hit]
    # back wall z = wall: vertical stripes
    hit = wall < depth
    stripes = (np.floor(rays[..., 0] * wall / 0.7) % 2)[..., None]
    color[hit] = (np.where(stripes, [150, 110, 80], [180, 160, 140]) * np.ones_like(color))[hit]
    depth[hit] = wall
    # boxes standing on the ground: slab intersection, faces shaded by their normal
    for _ in range(rng.integers(2, 5)):
        size = rng.uniform(0.4, 1.2, 3)
        centre = np.array([rng.uniform(-2.0, 2.0), cam_height - size[1] / 2, rng.uniform(2.5, wall - 1.0)])
        lo, hi = centre - size / 2, centre + size / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - 0) / rays, (hi - 0) / rays
        near = np.minimum(t1, t2)
        t_in, face = near.max(-1), near.argmax(-1)
        t_out = np.maximum(t1, t2).min(-1)
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < depth)
        base = rng.uniform(40, 255, 3)
        shade = np.array([0.75, 1.0, 0.55])[face][..., None]
        color[hit] = (base * shade)[hit]
        depth[hit] = t_in[hit]
    color *= np.clip(1.15 - depth / (1.5 * wall), 0.3, 1.0)[..., None]  # distance haze, a cue for the network
    noise = rng.normal(0, 4, color.shape)
    return np.clip(color + noise, 0, 255).astype(np.uint8), depth


def synthetic_depth(out: Path, n_train: int = 8, n_val: int = 4, size: tuple[int, int] = (120, 160)) -> Path:
    """SYNTHETIC depth scenes (seeded): ``images/{split}/*.png`` and 16-bit ``depth/{split}/*.png``; returns the
    dataset YAML."""
    root = out / "synthetic-depth"
    rng = np.random.default_rng(0)
    for split, n in zip(SPLITS, (n_train, n_val)):
        for folder in ("images", "depth"):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, depth = _scene(rng, *size)
            cv2.imwrite(str(root / "images" / split / f"scene{i:03d}.png"), image)
            encoded = np.clip(np.round(depth * DEPTH_SCALE), 1, 65535).astype(np.uint16)
            cv2.imwrite(str(root / "depth" / split / f"scene{i:03d}.png"), encoded)
    return _write_yaml(root, root.name, {"names": {0: "depth"}, "nc": 1, "depth_scale": DEPTH_SCALE, "max_depth": 10.0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    default = os.environ.get("YOLO_MOBILEVIT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--source", type=Path, default=Path(default), help="folder holding coco8-seg/")
    args = parser.parse_args()
    seg = args.source / "coco8-seg"
    for path in (semantic_masks(args.out, seg), semantic_polygons(args.out, seg), synthetic_depth(args.out)):
        print(path)


if __name__ == "__main__":
    main()
