"""The ``nas`` command line: a thin shell over library functions.

Each sub-command parses its arguments, calls one function of the ``nas`` package and prints the
result. Bad input is reported as one line (``nas: error: ...``, exit status 2), never a traceback.
Heavy imports happen inside the commands so ``nas --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

MODEL_HELP = "a fixed-point name (see `nas zoo`) or a spec JSON file (see `nas spec`)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def cmd_zoo(args: argparse.Namespace) -> int:
    """Print the published designs with our parameter and MAC counts."""
    from nas.zoo import zoo_frame, zoo_records

    records = zoo_records(args.resolution)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(zoo_frame(records).to_string(index=False, na_rep="-",
                                           formatters={"params": "{:,}".format}))
    print(f"\nparams: exact count, 1000 classes. MACs: fvcore multiply-accumulates at "
          f"{args.resolution}x{args.resolution} with the attention matmuls (the papers call these "
          "FLOPs); docs/models.md relates them to each paper's count.")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    """Print a model's architecture spec as JSON (edit it and pass the file to any command)."""
    from mobilevit import resolve_spec

    spec = resolve_spec(args.model)
    print(spec.to_json(indent=2))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Print a model's parameter count and MACs (fvcore) at a resolution."""
    from mobilevit import fixed_point_name, resolve_spec
    from nas.profile import profile

    spec = resolve_spec(args.model)
    prof = profile(spec, args.resolution)
    if args.json:
        print(json.dumps({"spec_id": spec.spec_id, **prof.to_dict()}, indent=2))
        return 0
    name = fixed_point_name(spec) or spec.spec_id
    print(f"{name}: {prof.params:,} parameters, {prof.macs / 1e6:,.1f} M MACs at "
          f"{prof.resolution}x{prof.resolution}")
    for group, macs in sorted(prof.macs_by_group.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<10} {macs / 1e6:>10,.1f} M")
    print(f"  {spec.summary()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model to CoreML (.mlpackage) or ONNX."""
    from mobilevit import resolve_spec
    from nas.export import export_model

    spec = resolve_spec(args.model)
    print(f"exporting {args.model} to {args.to} ...", file=sys.stderr)
    result = export_model(spec, args.output, to=args.to, resolution=args.resolution,
                          weights=args.weights, precision=args.precision)
    extra = f", max tensor rank {result.max_rank}" if result.max_rank is not None else ""
    print(f"wrote {result.path} ({result.format}, spec {result.spec_id}, "
          f"{result.resolution}x{result.resolution}{extra})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nas`` command."""
    parser = argparse.ArgumentParser(
        prog="nas", description="Hardware-aware architecture search and ablation of "
                                "MobileViT-family models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0],  # type: ignore[union-attr]
                           description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("zoo", cmd_zoo)
    p.add_argument("--json", action="store_true", help="print JSON records with full specs")
    p.add_argument("--resolution", type=_positive_int, default=256, help="MAC input size")

    p = add("spec", cmd_spec)
    p.add_argument("model", help=MODEL_HELP)

    p = add("profile", cmd_profile)
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input size (default: the spec's)")
    p.add_argument("--json", action="store_true")

    p = add("export", cmd_export)
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--to", choices=("coreml", "onnx"), default="coreml")
    p.add_argument("-o", "--output", required=True, help="output path (.mlpackage / .onnx)")
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input size (default: the spec's)")
    p.add_argument("--weights", default=None, help="state-dict file to load before exporting")
    p.add_argument("--precision", choices=("float16", "float32"), default="float16",
                   help="CoreML compute precision")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nas`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from nas.errors import USER_ERRORS
    from nas.runtime import tune_cpu_allocator

    tune_cpu_allocator()

    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
