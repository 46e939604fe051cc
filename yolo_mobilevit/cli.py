"""The ``yolo-mobilevit`` command (argument parsing only; the work lives in the library)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import InputRefused

Handler = Callable[[argparse.Namespace], int]


def _cmd_modules(args: argparse.Namespace) -> int:
    """list the YAML modules the plugin registers, with their arguments"""
    from .modules import YAML_MODULES

    for name, cls in sorted(YAML_MODULES.items()):
        print(f"{name:<20} {cls.signature():<55} repeats: {cls.repeats_rule()} ({cls.repeats_doc})")
        c2 = [] if cls.passthrough else [f"c2: int > 0 (x width, multiple of {cls.channel_divisor})"]
        args = [
            a.describe() + (f" (x width, multiple of {cls.channel_divisor})" if a.scaled else "") for a in cls.yaml_args
        ]
        if c2 or args:
            print(f"{'':<20} " + "; ".join(c2 + args))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """turn a timm / ml-cvnets checkpoint into an Ultralytics checkpoint of a plugin config

    Map a reference checkpoint's backbone onto a plugin config and write an Ultralytics .pt; then
    `yolo train model=CFG pretrained=OUTPUT` transfers it.
    """
    from .convert import convert_checkpoint

    convert_checkpoint(
        args.source,
        args.cfg,
        args.output,
        fmt=args.format,
        strict=not args.partial,
        swap_rb=args.swap_rb,
        head=not args.no_head,
        classes=args.classes,
    )
    return 0


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="checkpoint file (.pth/.pt/.bin/.safetensors) or a timm / torchvision model name (downloads its "
        "weights: refused when YOLO_OFFLINE is set)",
    )
    p.add_argument(
        "--cfg", required=True, help="plugin model YAML, e.g. yolov8-mobilevitv2.yaml (shipped configs by name)"
    )
    p.add_argument("-o", "--output", required=True, help="Ultralytics checkpoint to write (.pt)")
    p.add_argument("--format", default=None, help="source format (default: detected from the tensor names)")
    p.add_argument("--partial", action="store_true", help="allow a partial fit instead of refusing it")
    p.add_argument(
        "--swap-rb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reverse the stem's input channels (or keep them: --no-swap-rb); default: by the source's training "
        "colour order (ml-cvnets v0.1 MobileViT: BGR, reversed; timm, torchvision: RGB, kept)",
    )
    p.add_argument(
        "--no-head", action="store_true", help="-cls configs: leave the Classifier row initialized (new classes)"
    )
    p.add_argument(
        "--classes",
        default=None,
        help="-cls configs: keep only this dataset's ImageNet classes (dataset folder or data YAML), in its order",
    )


def _cmd_doctor(args: argparse.Namespace) -> int:
    """check the Ultralytics version, start-up activation, safe loading and a config's map sizes

    Report whether the plugin is supported and active here; with --cfg, list the map size each plugin stage receives
    at --imgsz and whether patch-based stages (MobileViT v1/v2) handle it natively.
    """
    from .tools.doctor import run

    return run(args.cfg, args.imgsz, args.rect, args.multi_scale)


def _doctor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", help="model YAML to check, e.g. yolov8n-mobilevit.yaml (shipped configs by name)")
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


def _cmd_cfg(args: argparse.Namespace) -> int:
    """list the shipped model configs (family, task, head, params, GFLOPs at 640), or copy one to edit

    Without NAME: every shipped config at each scale, by the name `yolo train model=NAME` takes from any folder. With
    NAME: write a copy of that config into the current folder (as `yolo copy-cfg` does); a file in the working
    directory wins over the shipped one.
    """
    from . import configs

    if args.name:
        try:
            target = configs.copy_config(args.name, args.dir, force=args.force)
        except (FileNotFoundError, FileExistsError) as e:
            print(f"yolo-mobilevit cfg: {e}", file=sys.stderr)
            return 2
        lettered = configs.scaled_name(target.name, configs.scale_of(args.name) or "n")
        print(f"wrote {target}; edit it, then e.g. `yolo train model={lettered}`: "
              "a file in the working directory wins over the shipped one")  # fmt: skip
        return 0
    folder = configs.config_dir()
    if folder is None:
        print("yolo-mobilevit cfg: no shipped configs found (this install lacks yolo_mobilevit/cfg)", file=sys.stderr)
        return 1
    rows, measured = configs.listing(args.measure, lambda line: print(line, file=sys.stderr, flush=True))
    print(configs.table(rows))
    made = ", ".join(f"{k} {v}" for k, v in configs.read_index().get("measured_with", {}).items())
    total = len(configs.shipped_configs())
    print(f"\n{len(rows)} models ({total} configs, one per scale) in {folder}")
    if measured < total:
        print(f"figures of {total - measured} configs: {configs.INDEX_FILE.name}, measured with {made} "
              f"(`{configs.INDEX_COMMAND}`)")  # fmt: skip
    if measured:
        print(f"figures of {measured} configs: measured now (not in the index, changed since, or --measure)")
    return 0


def _cfg_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="config to copy, with or without the scale letter (yolov8s-mobilevit.yaml)")
    p.add_argument("--dir", default=".", help="folder to write the copy into (default: the current folder)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file of that name")
    p.add_argument("--measure", action="store_true", help="measure every config here instead of reading the index")


def _cmd_compare(args: argparse.Namespace) -> int:
    """params, GFLOPs, latency, memory, training throughput, mAP and COCO AP of several models on one dataset

    Measure and train each model in its own process on one shared recipe, then write a markdown table and a CSV sorted
    by latency and a COCO-AP-vs-latency plot into PROJECT/NAME. KEY=VALUE arguments among the models are passed to
    every YOLO(model).train(...) (e.g. optimizer=SGD lr0=0.01 workers=4).
    """
    from .tools.compare import compare, default_models, parse_train_args

    models = [a for a in args.models if "=" not in a]
    if not models:
        models = default_models()
        print(f"compare: no models given; the defaults: {' '.join(models)}", flush=True)
    report = compare(
        models,
        args.data,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        seed=args.seed,
        device=args.device,
        train_args=parse_train_args([a for a in args.models if "=" in a]),
        batches=args.batches,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        train=not args.no_train,
        onnx=not args.no_onnx,
        simplify=not args.no_simplify,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
        pretrained=args.pretrained,
    )
    print("\n" + report.table)
    print(f"table: {report.markdown_file}\ncsv:   {report.csv_file}")
    print(
        f"plot:  {report.plot_file}"
        if report.plot_file
        else "plot:  none (no model has an accuracy: --no-train on YAMLs?)"
    )
    if report.failed:
        print(f"yolo-mobilevit compare: failed: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL|KEY=VALUE",
        help="model YAMLs (yolov8n-mobilevit.yaml, yolov8n.yaml) or checkpoints (.pt); KEY=VALUE: train args. "
        "No models: yolo26n, yolo11n, yolov8n and each family's flagship",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset YAML (default: coco128 from the folder $YOLO_MOBILEVIT_DATASETS names, else Ultralytics' "
        "coco128.yaml, downloaded)",
    )
    p.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    p.add_argument("--imgsz", type=int, default=640, help="image size for training, val, GFLOPs, latency (default 640)")
    p.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument(
        "--device", default=None, help="training/val device as Ultralytics takes it (default: Ultralytics' choice)"
    )
    p.add_argument(
        "--batches", type=int, nargs="+", default=[1, 32], help="batch sizes to time inference at (default 1 32)"
    )
    p.add_argument("--repeats", type=int, default=10, help="timed runs per latency figure, median kept (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before them (default 3)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for latency, torch and ONNX Runtime (default: cores)"
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="skip training: checkpoints (.pt) are validated as they are, YAMLs only measured",
    )
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and ONNX Runtime timing")
    p.add_argument("--no-simplify", action="store_true", help="export ONNX without onnxslim (faster export)")
    p.add_argument(
        "--pretrained",
        choices=("none", "imagenet"),
        default="none",
        help="one pretraining policy for every model. none (default): every model from scratch, plugin configs too; "
        "the same start for all, offline or not, so the table compares architectures on the recipe alone. "
        "imagenet: every backbone from ImageNet, plugin configs from their backbone_weights, stock YOLOv8/YOLO11/"
        "YOLO26 from Ultralytics' yolov8n-cls.pt / yolo11n-cls.pt / yolo26n-cls.pt (weights dir, the plugin's "
        "cache or YOLO_MOBILEVIT_WEIGHTS_MIRROR, else downloaded unless YOLO_OFFLINE); a model that gets none is "
        "flagged in results.md as not comparable. A .pt model trains its architecture under the policy too (its "
        "weights are not used; --no-train evaluates checkpoints as they are)",
    )
    p.add_argument("--project", default=None, help="output folder's parent (default: Ultralytics' runs dir/compare)")
    p.add_argument("--name", default=None, help="output folder name (default: the dataset's name), incremented")
    p.add_argument("--exist-ok", action="store_true", help="reuse PROJECT/NAME instead of incrementing the name")


def _cmd_cocoeval(args: argparse.Namespace) -> int:
    """COCO-standard box metrics (pycocotools): AP, AP50, AP75, APs, APm, APl, AR100

    Predict a detection dataset's split at the COCO protocol (conf 0.001, 100 detections per image) and score it with
    pycocotools against its YOLO labels (or COCO's instances JSON for COCO); writes ground_truth.json,
    predictions.json and metrics.json into runs/cocoeval/NAME.
    """
    from .tools.cocoeval import parse_args, run

    settings = parse_args(args.settings)
    run(settings.pop("model"), settings.pop("data"), **settings)
    return 0


def _cocoeval_arguments(p: argparse.ArgumentParser) -> None:
    from .tools.cocoeval import KEYS

    keys = ", ".join(f"{k}={'' if v is None else v}" for k, v in KEYS.items())
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE", help=f"e.g. model=best.pt data=coco8.yaml; keys: {keys}")


#: The subcommands: each handler's name after ``_cmd_`` is the command, its docstring the help (first line) and the
#: description (the rest); the second function adds its arguments.
COMMANDS: tuple[tuple[Handler, Callable[[argparse.ArgumentParser], None] | None], ...] = (
    (_cmd_modules, None),
    (_cmd_convert, _convert_arguments),
    (_cmd_doctor, _doctor_arguments),
    (_cmd_cfg, _cfg_arguments),
    (_cmd_compare, _compare_arguments),
    (_cmd_cocoeval, _cocoeval_arguments),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-mobilevit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for handler, add_arguments in COMMANDS:
        summary, _, details = (handler.__doc__ or "").partition("\n\n")
        p = sub.add_parser(
            handler.__name__.removeprefix("_cmd_"), help=summary.strip(), description=" ".join(details.split())
        )
        p.set_defaults(handler=handler)
        if add_arguments:
            add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # compare's KEY=VALUE train arguments may follow its options, where argparse no longer takes positionals
    if extra and (args.command != "compare" or any("=" not in a or a.startswith("-") for a in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.models += extra
    try:
        return args.handler(args)
    except InputRefused as e:  # convert, compare, cocoeval: what is wrong with the input, without a traceback
        print(f"yolo-mobilevit {args.command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as coreutils do
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
