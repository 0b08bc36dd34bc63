"""`accelsim sweep`: the subcommand (registered in accelsim/cli.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from accelsim.errors import AccelsimError

EPILOG = ("  accelsim sweep examples/sweep_systolic.yaml -o sweep.csv\n"
          "  accelsim sweep spec.yaml -o results.parquet --jobs 2 --cache .cache\n"
          "  accelsim sweep spec.yaml -o results.parquet --scheduler tcp://10.0.0.5:8786\n\n"
          "The spec and the output columns are documented in docs/sweeps.md.")


def add_arguments(s) -> None:
    s.add_argument("spec", metavar="SPEC.yaml", help="sweep spec: traces x machines with vary:/zip: (docs/sweeps.md)")
    s.add_argument("-o", "--output", required=True, metavar="FILE.parquet|csv", help="results table")
    s.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="local worker processes (default: all cores; 1 runs in this process)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask distributed cluster, e.g. tcp://HOST:8786 (pip install 'accelsim[dist]')")
    s.add_argument("--cache", metavar="DIR",
                   help="cache of finished points (default: .accelsim-sweep-cache next to the output)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary line")


def cmd_sweep(args) -> int:
    from accelsim.cli import _input_file, _output_file, _print, _progress, _write
    from accelsim.sweep.run import run_sweep
    from accelsim.sweep.spec import load_spec

    out = _output_file(args.output, (".parquet", ".csv"), "sweep output")
    if args.jobs is not None and args.jobs < 1:
        raise AccelsimError(f"--jobs {args.jobs}: expected 1 or more")
    _input_file(args.spec, (".yaml", ".yml"), "sweep spec")
    spec = load_spec(args.spec)  # every point validated before anything runs
    cache = Path(args.cache) if args.cache else (out.parent if str(out.parent) else Path(".")) / ".accelsim-sweep-cache"
    if cache.exists() and not cache.is_dir():
        raise AccelsimError(f"--cache {cache}: not a directory")
    bar = _progress("sweep", args.quiet)

    def progress(done: int, total: int, failed: int, eta: float) -> None:
        bar.label = f"sweep ({failed} failed, ETA {'?' if math.isnan(eta) else f'{eta:.0f}s'})"
        bar(done, total)

    try:
        rows, stats = [], None
        def go():
            nonlocal rows, stats
            rows, stats = run_sweep(spec, out, jobs=args.jobs, scheduler=args.scheduler, cache=cache,
                                    progress=progress)

        _write(out, go)
    finally:
        bar.close()
    if not args.quiet:
        _print(f"sweep: {stats.points} points x traces ({stats.simulated} simulated, {stats.cached} from cache, "
               f"{stats.failed} failed) in {stats.seconds:.1f} s; wrote {len(rows)} rows to {out}")
    return 1 if stats.failed and stats.failed == stats.points else 0
