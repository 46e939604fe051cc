"""The ``yolo-mobilevit`` command (argument parsing only; the work lives in the library)."""

from __future__ import annotations

import argparse
import sys


def _cmd_modules(args: argparse.Namespace) -> int:
    from .modules import YAML_MODULES

    for name, cls in sorted(YAML_MODULES.items()):
        print(f"{name:<20} {cls.signature():<55} repeats: {cls.repeats_doc}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import ConversionError, convert_checkpoint

    try:
        convert_checkpoint(
            args.source, args.cfg, args.output, fmt=args.format, strict=not args.partial, swap_rb=args.swap_rb
        )
    except ConversionError as e:
        print(f"yolo-mobilevit convert: {e}", file=sys.stderr)
        return 2
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn a timm / ml-cvnets checkpoint into an Ultralytics checkpoint of a plugin config",
        description="Map a reference checkpoint's backbone onto a plugin config and write an Ultralytics .pt; "
        "then `yolo train model=CFG pretrained=OUTPUT` transfers it.",
    )
    p.add_argument("source", help="checkpoint file (.pth/.pt/.bin/.safetensors) or a timm model name (needs network)")
    p.add_argument("--cfg", required=True, help="plugin model YAML, e.g. cfg/yolov8-mobilevitv2.yaml")
    p.add_argument("-o", "--output", required=True, help="Ultralytics checkpoint to write (.pt)")
    p.add_argument("--format", default=None, help="source format (default: detected from the tensor names)")
    p.add_argument("--partial", action="store_true", help="allow a partial fit instead of refusing it")
    p.add_argument("--swap-rb", action="store_true", help="reverse the stem's input channels (BGR-trained weights)")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run

    return run(args.cfg, args.imgsz, args.rect, args.multi_scale)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the Ultralytics version, start-up activation, safe loading and a config's map sizes",
        description="Report whether the plugin is supported and active here; with --cfg, list the map size each "
        "plugin stage receives at --imgsz and whether patch-based stages (MobileViT v1/v2) handle it natively.",
    )
    p.add_argument("--cfg", help="model YAML to check, e.g. cfg/yolov8n-mobilevit.yaml")
    p.add_argument("--imgsz", type=int, default=640, help="training/inference image size (default 640)")
    p.add_argument("--rect", action="store_true", help="include rectangular-batch sizes (up to imgsz + stride)")
    p.add_argument(
        "--multi-scale",
        type=float,
        nargs="?",
        const=0.5,
        default=0.0,
        help="include multi-scale sizes imgsz*(1-M)..imgsz*(1+M) in stride steps (default M 0.5)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yolo-mobilevit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("modules", help="list the YAML modules the plugin registers, with their arguments")
    _add_convert(sub)
    _add_doctor(sub)
    args = parser.parse_args(argv)
    return {"modules": _cmd_modules, "convert": _cmd_convert, "doctor": _cmd_doctor}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
