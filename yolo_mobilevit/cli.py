"""The ``yolo-mobilevit`` command (argument parsing only; the work lives in the library)."""

from __future__ import annotations

import argparse
import sys


def _cmd_modules(args: argparse.Namespace) -> int:
    from .modules import YAML_MODULES

    for name, cls in sorted(YAML_MODULES.items()):
        print(f"{name:<20} {cls.signature():<55} repeats: {cls.repeats_doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yolo-mobilevit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("modules", help="list the YAML modules the plugin registers, with their arguments")
    args = parser.parse_args(argv)
    return {"modules": _cmd_modules}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
