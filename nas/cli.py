"""The ``nas`` command line: a thin shell over library functions.

Each sub-command parses its arguments, calls one function of the ``nas`` package and prints the
result. Bad input is reported as one line (``nas: error: ...``, exit status 2), never a traceback.
Heavy imports happen inside the commands so ``nas --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence

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
    from nas.zoo import zoo_records, zoo_table

    records = zoo_records(args.resolution)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    print(zoo_table(records))
    print(f"\nparams: exact count, 1000 classes. MACs: multiply-accumulates at "
          f"{args.resolution}x{args.resolution} with the attention matmuls, counted as fvcore "
          "counts them (the papers call these FLOPs); docs/models.md relates them to each "
          "paper's count.")
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
    """Export a model, or a trial of a run folder, to CoreML (.mlpackage) or ONNX."""
    from pathlib import Path

    from mobilevit import resolve_spec
    from nas.errors import NasError
    from nas.export import export_model

    if Path(args.model).is_dir():
        from nas.results.runs import export_trial

        if args.trial is None:
            raise NasError(f"{args.model} is a run folder: choose a trial with --trial N "
                           "(see `nas status`)")
        out = export_trial(args.model, args.trial, to=args.to, output=args.output,
                           resolution=args.resolution, precision=args.precision)
        for name, path in out.items():
            print(f"{name}: {path}")
        return 0
    if args.output is None:
        raise NasError("export: give the output path with -o PATH")
    spec = resolve_spec(args.model)
    print(f"exporting {args.model} to {args.to} ...", file=sys.stderr)
    result = export_model(spec, args.output, to=args.to, resolution=args.resolution,
                          weights=args.weights, precision=args.precision)
    extra = f", max tensor rank {result.max_rank}" if result.max_rank is not None else ""
    print(f"wrote {result.path} ({result.format}, spec {result.spec_id}, "
          f"{result.resolution}x{result.resolution}{extra})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a study (or continue it): a budgeted multi-objective search on Ray workers."""
    from pathlib import Path

    from nas.search.runner import run_study
    from nas.study.prepare import load

    prepared = load(args.study, args.set)
    if args.output:
        import dataclasses

        prepared = dataclasses.replace(prepared, run_dir=Path(args.output).resolve())
    summary = run_study(prepared, trials=args.trials, workers=args.workers, seeds=args.seeds,
                        resume=args.resume,
                        stream=None if args.quiet else sys.stderr)
    if prepared.config.ablation is not None:
        from nas.results.ablation import write_ablation

        _, text = write_ablation(prepared.run_dir)
        print(text)
        print(f"wrote {prepared.run_dir / 'ablation.csv'}")
    return 130 if summary.stopped_by == "interrupted" else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a study without running it and say what running it would do: the resolved
    settings, the search space and its smallest network against the budget, each fixed trial's
    size, the run folder, storage and Ray cluster, and a cost estimate. Starts no Ray, creates
    no run folder and opens no storage; an invalid study is one line and exit status 2, as for
    `nas run`."""
    from nas.study.check import check_study, check_text

    facts = check_study(args.study, args.set)
    print(json.dumps(facts, indent=2) if args.json else check_text(facts))
    return 0


def cmd_supernet(args: argparse.Namespace) -> int:
    """Train a study's weight-sharing supernet (`nas supernet train STUDY.yaml`), or list the
    stored ones (`nas supernet info [STUDY.yaml]`). A study with `evaluator.kind: supernet`
    trains its supernet itself when the store has none; training it first is for a cluster
    job or a shared store. Stored by a content hash of space, budget, training and seed."""
    from nas.errors import NasError

    if args.action == "info" and args.study is None:
        from nas.supernet.store import SupernetStore

        store = SupernetStore(args.store)
        entries = store.entries()
        print(f"{len(entries)} supernet(s) in {store.root}")
        for entry in entries:
            print("  " + entry.summary())
        return 0
    if args.study is None:
        raise NasError("supernet train: give the study file")
    from nas.study.prepare import load

    prepared = load(args.study, [*args.set, *([f"evaluator.store={args.store}"]
                                              if args.store else [])])
    config = prepared.config
    if config.evaluator.kind != "supernet":
        raise NasError(f"{prepared.source}: evaluator.kind={config.evaluator.kind}; a supernet "
                       "needs evaluator.kind: supernet")
    evaluator = config.evaluator.build()
    if args.action == "info":
        entry = evaluator.stored(prepared.space, config.budget, config.seed)
        for title, e in [("", entry), *((f"  part {', '.join(map(str, values))}: ", e) for
                                        values, e in evaluator.stored_parts(
                                            prepared.space, config.budget, config.seed))]:
            print(title + (e.summary() if e.complete else
                           f"{e.key}  not trained yet (it would go to {e.folder})"))
        return 0
    if config.evaluator.train_workers > 1:  # Ray Train workers on the study's Ray instance
        from nas.search.runner import init_ray

        init_ray(config)
    bound = evaluator.for_search(prepared.space, config.budget, config.seed, label=config.name)
    print(f"supernet for {config.name}: {bound.folder}")
    for values, folder in bound.parts:
        print(f"  part {', '.join(map(str, values))}: {folder}")
    return 0


def cmd_ablations(args: argparse.Namespace) -> int:
    """List the paper ablations (studies/ablations/), or run them with --run: each prints the
    papers' figures beside ours and whether our rows come in the paper's order."""
    import dataclasses
    from pathlib import Path

    import pandas as pd

    from nas.errors import NasError
    from nas.results.ablation import ablation_files, smoke_fidelity, with_fidelity, write_ablation
    from nas.search.runner import run_study
    from nas.study.prepare import load, prepare

    files = ablation_files(args.dir)
    args.output = args.output or ("runs/ablations-smoke" if args.smoke else "runs/ablations")
    if args.names:
        known = {p.stem: p for p in files}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            raise NasError(f"{', '.join(unknown)}: no such ablation in {args.dir}; "
                           f"expected one of {', '.join(known)}")
        files = [known[n] for n in args.names]
    prepared = [load(p) for p in files]
    if not args.run:
        for path, p in zip(files, prepared, strict=True):
            ab = p.config.ablation
            print(f"{path.stem:<18} {len(p.fixed)} rows  {ab.paper if ab else '(no ablation)'}")
            print(f"{'':<18} {p.config.description}")
        print(f"\nrun one: nas run {files[0] if files else 'FILE'}; run all: nas ablations --run "
              "[--smoke] [NAME ...]")
        return 0
    tables = []
    folder = Path(args.output)
    for path, p in zip(files, prepared, strict=True):
        config = p.config
        if args.fidelity:
            config = with_fidelity(config, args.fidelity)
        if args.smoke:
            config = smoke_fidelity(config)
        if config is not p.config:
            p = prepare(config, str(path), base_dir=path.parent, run_dir=folder / path.stem)
        else:
            p = dataclasses.replace(p, run_dir=folder / path.stem)
        summary = run_study(p, seeds=args.seeds, stream=None if args.quiet else sys.stderr)
        table, text = write_ablation(p.run_dir)
        print(text + f"\nwrote {p.run_dir / 'ablation.csv'}\n", flush=True)
        tables.append(table.assign(ablation=path.stem))
        if summary.stopped_by == "interrupted":
            return 130
    out = folder / "ablations.csv"
    pd.concat(tables, ignore_index=True).to_csv(out, index=False)
    print(f"wrote {out} ({len(tables)} ablations)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show a run's progress: trials by outcome and the Pareto set."""
    from nas.results.runs import status_text

    print(status_text(args.run_dir))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    """Print a run's trials as a table and write them as CSV and Parquet."""
    from pathlib import Path

    import pandas as pd

    from nas.results.runs import open_run, write_results

    study, config = open_run(args.run_dir)
    frame = write_results(study, config, Path(args.run_dir))
    columns = [c for c in ("number", "status", "fixed_point", "accuracy", "latency_ms", "params",
                           "macs", "pareto", "fail_reason") if c in frame]
    with pd.option_context("display.width", 200, "display.max_rows", args.rows,
                           "display.max_colwidth", 60):
        print(frame[columns].to_string(index=False, na_rep="-") if len(frame) else "no trials")
    print(f"\nwrote {Path(args.run_dir) / 'trials.csv'} and trials.parquet ({len(frame)} rows, "
          f"{len(frame.columns)} columns)")
    return 0


def _reference_point(text: str) -> tuple[str, float]:
    metric, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return metric.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected METRIC=VALUE, e.g. "
                                         "latency_ms=50") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Write a run's report: an interactive HTML page (opens offline) with the Pareto front of
    accuracy vs latency beside the papers' models, size and budget plots, hypervolume, progress,
    search choices and the Pareto trials; the data of every figure as CSV; with --static, the
    figures as PNG or SVG files. --serve serves it on localhost and rebuilds it while the study
    runs."""
    import webbrowser

    reference = dict(args.reference) if args.reference else None
    if args.serve:
        from nas.report.serve import serve

        serve(args.run_dir, stream=sys.stderr, output=args.output, host=args.host,
              port=args.port, interval_s=args.interval, reference=reference)
        return 0
    from nas.report.page import write_report

    files = write_report(args.run_dir, output=args.output, static=args.static,
                         reference=reference)
    print(f"wrote {files.html}")
    print(f"  data of each figure: {files.html.parent / 'data'} ({len(files.data)} CSV files)")
    if files.static:
        print(f"  figures: {files.html.parent / 'figures'} ({len(files.static)} "
              f"{args.static.upper()} files)")
    if args.open:
        webbrowser.open(files.html.resolve().as_uri())
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Open optuna-dashboard on a run's study storage (journal file or database)."""
    from pathlib import Path

    import optuna_dashboard

    from nas.errors import NasError
    from nas.results.runs import open_run
    from nas.study.prepare import open_storage

    _, config = open_run(args.run_dir)  # checks the folder and that the study exists
    storage = open_storage(config, Path(args.run_dir), repair=False)
    print(f"optuna-dashboard for study {config.name} at http://{args.host}:{args.port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as exc:
        raise NasError(f"--port {args.port}: cannot listen on {args.host} "
                       f"({exc.strerror or exc})") from None
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    """List the search space's parameters (as narrowed by a study, if given)."""
    from search_spaces import MobileViTSpace

    if args.study:
        from nas.study.prepare import load

        space = load(args.study).space
    else:
        space = MobileViTSpace()
    for name, param in space.params.items():
        print(f"{name:<20} {param.describe():<45} {param.help}")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """Latency of a model from an oracle: predicted for an iPhone, measured by a latency agent,
    or measured on this machine.

    Results are cached by (spec id, resolution, backend, device, versions) in the latency cache
    (~/.cache/mobilevit-nas/latency.sqlite, or $NAS_CACHE_DIR), shared with studies.
    """
    from mobilevit import resolve_spec
    from nas.latency import LatencyCache, cached_latency
    from nas.study.config import latency_from_flags

    spec = resolve_spec(args.model)
    config = latency_from_flags(args.backend, {
        "resolution": ("--resolution", args.resolution or spec.resolution),
        "calibration": ("--calibration", args.calibration),
        "url": ("--agent", args.agent),
        "threads": ("--threads", args.threads),
        "features": ("--features", args.features),
        "cache": ("--cache", args.cache)})
    if args.token is not None and args.backend != "agent":
        from nas.errors import NasError

        raise NasError("--token: only with --backend agent")
    oracle = config.build(token=args.token) if args.token else config.build()
    if args.no_cache:
        result, hit = oracle.measure(spec), False
    else:
        result, hit = cached_latency(oracle, spec, LatencyCache(args.cache))
    if args.json:
        print(json.dumps({**result.to_dict(), "cached": hit, "spec_id": spec.spec_id}, indent=2))
        return 0
    what = "predicted" if result.runs == 0 else f"median of {result.runs} runs"
    print(f"{args.model}: {result.median_ms:.3f} ms ({what}; trimmed mean "
          f"{result.trimmed_mean_ms:.3f} ms, spread {result.spread:.1%})")
    print(f"  backend {result.backend} | device {result.device} | compute units "
          f"{result.compute_units} | resolution {result.resolution}"
          f"{' | from the cache' if hit else ''}")
    print("  versions " + ", ".join(f"{k} {v}" for k, v in sorted(result.versions.items())))
    return 0


def cmd_latency_calibrate(args: argparse.Namespace) -> int:
    """Fit the latency predictor to measured latencies and report its leave-one-out error.

    --published refits the shipped iPhone 12 calibration from the published rows;
    --measurements FILE.csv fits measurements of a device (columns: model, latency_ms, and
    optionally resolution and source), e.g. latencies the latency agent measured.
    """
    from nas.latency.calibrate import calibrate_command

    return calibrate_command(args)


def cmd_latency_agent(args: argparse.Namespace) -> int:
    """Serve latency measurements over HTTP (run it on the Mac that has the device).

    Loopback by default; any other --host needs a token (--token or $NAS_AGENT_TOKEN). The local
    runner times PyTorch on this machine's CPU instead of CoreML, so the protocol can be tried
    anywhere; its results are labelled as such.
    """
    import os

    from nas.latency.runners import CoreMLRunner, LocalRunner
    from nas.latency.server import AgentServer

    runner = LocalRunner(threads=args.threads) if args.runner == "local" else CoreMLRunner(
        compute_units=args.compute_units, device="iphone" if args.iphone else None,
        team_id=args.team_id)
    server = AgentServer(runner, host=args.host, port=args.port,
                         token=args.token or os.environ.get("NAS_AGENT_TOKEN"),
                         max_upload_mb=args.max_upload_mb)
    info = runner.info()
    print(f"latency agent on http://{args.host}:{args.port} | {info['backend']} | "
          f"{info['device']} | token {'required' if server.token else 'not required (loopback)'}",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


class _LatencyBackends:
    """The registered standalone latency kinds, read when argparse first looks at them.

    Importing the study config (pydantic) costs more than the commands that only read a spec
    spend altogether, and only ``nas latency`` needs this list; argparse touches ``choices``
    when it checks a given value or prints help."""

    def _kinds(self) -> tuple[str, ...]:
        from nas.study.config import LATENCY_KINDS

        return LATENCY_KINDS.kinds(standalone=True)

    def __contains__(self, value: object) -> bool:
        return value in self._kinds()

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds())


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

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field of the study (repeatable): a dotted key and a "
                            "YAML value, e.g. --set evaluator.epochs=3 --set "
                            "fixed_trials=[mobilevit_xxs]; merged over the file (after "
                            "extends) and validated with it")

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

    p = add("run", cmd_run)
    p.add_argument("study", help="a study YAML file, or a run folder to continue")
    p.add_argument("--trials", type=_positive_int, default=None,
                   help="number of trials to evaluate (overrides the study)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="concurrent trials (overrides workers.concurrent)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="seeds of each fixed trial and refined candidate (overrides the study's "
                        "seeds; raising it on a run folder adds the missing seeds)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run folder's study even if the study file changed")
    p.add_argument("--output", default=None, help="run folder (default: the study's output)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_set(p)

    p = add("check", cmd_check)
    p.add_argument("study", help="a study YAML file, or a run folder")
    add_set(p)
    p.add_argument("--json", action="store_true", help="print the facts as JSON")

    p = add("supernet", cmd_supernet)
    p.add_argument("action", choices=("train", "info"))
    p.add_argument("study", nargs="?", default=None,
                   help="a study file with evaluator.kind: supernet")
    p.add_argument("--store", default=None,
                   help="the supernet store (default: the study's evaluator.store, else "
                        "supernets/ in the cache folder)")
    add_set(p)

    p = add("ablations", cmd_ablations)
    p.add_argument("names", nargs="*", help="ablations to run (default: all)")
    p.add_argument("--run", action="store_true", help="run them (each in OUTPUT/NAME)")
    p.add_argument("--smoke", action="store_true",
                   help="at the smoke fidelity (seconds per row; the numbers mean nothing)")
    p.add_argument("--fidelity", default=None, metavar="FILE",
                   help="a study file whose evaluator, latency, workers, pruner and seed replace "
                        "the ablations' (e.g. studies/ablations/_cifar10_proxy.yaml)")
    p.add_argument("-o", "--output", default=None,
                   help="folder of the run folders (default: runs/ablations, or "
                        "runs/ablations-smoke with --smoke)")
    p.add_argument("--dir", default="studies/ablations", help="where the ablation files are")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="seeds per row: each its own trial; rows report mean and 95 %% interval")
    p.add_argument("--quiet", action="store_true", help="no progress display")

    p = add("status", cmd_status)
    p.add_argument("run_dir", help="a run folder")

    p = add("trials", cmd_trials)
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--rows", type=_positive_int, default=60, help="rows to print")

    p = add("report", cmd_report)
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("-o", "--output", default=None, help="report folder (default: RUN_DIR/report)")
    p.add_argument("--static", choices=("png", "svg"), default=None,
                   help="also write each figure as a PNG or SVG file (needs Chrome or Chromium)")
    p.add_argument("--reference", type=_reference_point, action="append", default=None,
                   metavar="METRIC=VALUE",
                   help="hypervolume reference point, one per objective (default: each "
                        "objective's worst value, 10%% of its range further out)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.add_argument("--serve", action="store_true",
                   help="serve the report on localhost and rebuild it while the study runs")
    p.add_argument("--host", default="127.0.0.1", help="--serve address")
    p.add_argument("--port", type=int, default=8050, help="--serve port")
    p.add_argument("--interval", type=float, default=10.0,
                   help="--serve: seconds between checks for new trials")

    p = add("dashboard", cmd_dashboard)
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)

    p = add("space", cmd_space)
    p.add_argument("study", nargs="?", default=None, help="a study file (default: the full space)")

    p = add("export", cmd_export)
    p.add_argument("model", help=MODEL_HELP + ", or a run folder with --trial")
    p.add_argument("--trial", type=int, default=None, help="trial number (with a run folder)")
    p.add_argument("--to", choices=("coreml", "onnx"), default="coreml")
    p.add_argument("-o", "--output", default=None,
                   help="output path (.mlpackage / .onnx); for a trial, a folder")
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input size (default: the spec's)")
    p.add_argument("--weights", default=None, help="state-dict file to load before exporting")
    p.add_argument("--precision", choices=("float16", "float32"), default="float16",
                   help="CoreML compute precision")

    p = add("latency", cmd_latency)
    p.add_argument("model", help=MODEL_HELP + "; `nas latency calibrate --help` refits")
    p.add_argument("--backend", choices=_LatencyBackends(), default="predictor",
                   metavar="KIND",  # argparse lists the choices for a metavar when it is built
                   help="the latency oracle: %(choices)s (default: %(default)s)")
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input size (default: the spec's)")
    p.add_argument("--calibration", default=None,
                   help="predictor calibration file (default: the shipped iPhone 12 one)")
    p.add_argument("--features", choices=("templates", "units", "network"), default=None,
                   help="--backend predictor: per-block features from written-down programs "
                        "(templates, the default), from per-block conversions (units), or "
                        "convert the whole network (network)")
    p.add_argument("--agent", default=None, help="latency agent URL (--backend agent)")
    p.add_argument("--token", default=None,
                   help="latency agent token (default: $NAS_AGENT_TOKEN)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="--backend local threads (default 1)")
    p.add_argument("--cache", default=None, help="latency cache file")
    p.add_argument("--no-cache", action="store_true", help="measure even if cached; store nothing")
    p.add_argument("--json", action="store_true")

    p = add("latency-calibrate", cmd_latency_calibrate)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--published", action="store_true",
                        help="the published iPhone 12 rows (the shipped calibration)")
    source.add_argument("--measurements", default=None, help="a CSV of measured latencies")
    p.add_argument("--device", default=None, help="device name (--measurements)")
    p.add_argument("--compute-units", default="all")
    p.add_argument("-o", "--output", required=True, help="calibration file to write (.json)")

    p = add("latency-agent", cmd_latency_agent)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None, help="required token (default: $NAS_AGENT_TOKEN)")
    p.add_argument("--runner", choices=("coreml", "local"), default="coreml")
    p.add_argument("--iphone", action="store_true",
                   help="measure on the tethered iPhone (coremltools remote device)")
    p.add_argument("--team-id", default=None, help="Apple developer Team ID (--iphone)")
    p.add_argument("--compute-units", default="ALL",
                   choices=("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY"))
    p.add_argument("--threads", type=_positive_int, default=1, help="local runner threads")
    p.add_argument("--max-upload-mb", type=float, default=200.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nas`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["latency", "calibrate"]:  # `nas latency calibrate` is its own command
        argv = ["latency-calibrate", *argv[2:]]
    args = parser.parse_args(argv)
    from nas.errors import USER_ERRORS
    from nas.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    if args.func in (cmd_run, cmd_ablations, cmd_status, cmd_trials, cmd_report, cmd_export,
                     cmd_dashboard):
        # Optuna logs every told trial at INFO; the progress line says it better. Set here, not
        # in the library: library calls leave the process's logging as they found it.
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nas space | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
