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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yolo-mobilevit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("modules", help="list the YAML modules the plugin registers, with their arguments")
    _add_convert(sub)
    args = parser.parse_args(argv)
    return {"modules": _cmd_modules, "convert": _cmd_convert}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
