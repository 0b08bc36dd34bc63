"""The ``accelsim`` command line: run | compare | inspect | plot | record | sweep.

Bad input (a missing or corrupt file, a bad flag, a hardware file with an unknown key) prints one
line ``accelsim: error: ...`` on stderr and exits 2. Only AccelsimError and argparse errors are
caught that way; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Sequence

from accelsim import __version__
from accelsim.errors import AccelsimError
from accelsim.util.files import display_path

PROG = "accelsim"
FOOTPRINT_FORMATS = ("auto", "dense", "bitmap", "coo", "csr", "nm")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage block first).

    ``populate(parser)``, if given, adds the arguments on first use (parsing, help or usage), so a
    sub-command whose flags come from a heavier module (``record``: the method dataclasses) costs
    nothing to the other commands; its help text is the same as if built at once."""

    def __init__(self, *args, populate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._populate = populate

    def populated(self) -> "_Parser":
        """This parser with its arguments added (what ``populate`` adds; itself when there is none)."""
        fill, self._populate = getattr(self, "_populate", None), None
        if fill is not None:
            fill(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        return super(_Parser, self.populated()).parse_known_args(args, namespace)

    def format_help(self) -> str:
        return super(_Parser, self.populated()).format_help()

    def format_usage(self) -> str:
        return super(_Parser, self.populated()).format_usage()

    def error(self, message: str):  # noqa: D401 - argparse API
        text = " ".join(str(message).split())
        if len(text) > 300:  # an unknown 100 KB argument is quoted in the message: cut it
            text = text[:297] + "..."
        _stderr(f"{PROG}: error: {text} (see '{self.prog} --help')\n")
        sys.exit(2)

    def _print_message(self, message: str, file=None) -> None:
        # argparse swallows OSError here, so `accelsim --help > /dev/full` exited 0 having printed
        # nothing; --help and --version go through our stdout writer (a full device: one line, exit 2)
        if not message:
            return
        if file is None or file is sys.stderr:
            _stderr(message)
        else:
            _flush_stdout(message)


def _fmt() -> type:
    return argparse.RawDescriptionHelpFormatter


# ---------------------------------------------------------------------------------------- inputs
def _stat(p: Path, shown: str, what: str) -> os.stat_result | None:
    """os.stat of a user path; None if it does not exist; any other refusal (a name too long, a
    parent directory without search permission, a symlink loop) is a one-line error."""
    try:
        return p.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise AccelsimError(f"{shown}: cannot open the {what}: {e.strerror or type(e).__name__}") from None


def _input_file(path: str, exts: Sequence[str], what: str) -> Path:
    p = Path(path)
    shown = display_path(path)
    if p.suffix.lower() not in exts:
        hint = ""
        if len(path) < 1024:  # a hint is a guess: never let it fail on a hostile name
            hint = next((f"; did you mean {shown}{e}?" for e in exts
                         if (st := _stat(Path(f"{path}{e}"), shown, what)) and stat.S_ISREG(st.st_mode)), "")
        raise AccelsimError(f"{shown}: not a {what} (expected a {' or '.join(exts)} file){hint}")
    st = _stat(p, shown, what)
    if st is None:
        raise AccelsimError(f"{shown}: {what} not found")
    if not stat.S_ISREG(st.st_mode):
        raise AccelsimError(f"{shown}: {what} is not a regular file")
    return p


def _output_file(path: str | None, exts: Sequence[str], what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    shown = display_path(path)
    if p.suffix.lower() not in exts:
        raise AccelsimError(f"{shown}: {what} must end in {' or '.join(exts)}")
    st = _stat(p, shown, what)
    if st is not None and stat.S_ISDIR(st.st_mode):  # fail before a long simulation, not when writing
        raise AccelsimError(f"{shown}: {what} is a directory, expected a file path")
    parent = p.parent if str(p.parent) else Path(".")
    pst = _stat(parent, shown, what)
    if pst is None or not stat.S_ISDIR(pst.st_mode):
        raise AccelsimError(f"{shown}: directory {display_path(parent)} does not exist")
    return p


def _open_trace(path: str):
    from accelsim.trace.format import load_trace

    _input_file(path, (".npz",), "trace file")
    return load_trace(path)


def _open_hw(spec: str):
    """A hardware file by path, or a shipped machine by name (``--hw a100_24``, hw/catalog.py)."""
    from accelsim.hw import catalog, load_hw

    path = catalog.resolve(spec)
    if path == Path(spec) and os.path.lexists(spec):  # a file the user named: it must look like one
        _input_file(spec, (".yaml", ".yml"), "hardware file")
    return load_hw(path)  # a name that is neither: one line listing the shipped machines


class _Once(argparse.Action):
    """A flag that may be given once: argparse's default silently keeps the last of two."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice ('{parser.prog}' simulates one machine; "
                         f"'accelsim compare' takes several)")
        setattr(namespace, self.dest, values)


class StepSet:
    """Steps chosen by ``--steps``, kept as inclusive ranges: '0-100000000000' costs two integers,
    not a set of 10^11 (membership and what is missing are computed from the ranges)."""

    def __init__(self, ranges: Sequence[tuple[int, int]]):
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):  # overlapping or touching ranges become one
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.ranges = tuple((lo, hi) for lo, hi in merged)

    def __contains__(self, step: object) -> bool:
        return isinstance(step, int) and any(lo <= step <= hi for lo, hi in self.ranges)

    def missing(self, have: set[int], first: int = 5) -> tuple[list[int], int]:
        """(the first ``first`` chosen steps not in ``have``, how many are missing in all)."""
        total = sum(hi - lo + 1 for lo, hi in self.ranges) - sum(1 for s in have if s in self)
        out: list[int] = []
        for lo, hi in self.ranges:
            s = lo
            while s <= hi and len(out) < first:  # at most first + len(have) rounds in all
                if s not in have:
                    out.append(s)
                s += 1
        return out, total


def parse_steps(text: str | None) -> StepSet | None:
    """'3' | '0,2' | '1-4' | '0,5-7' -> the chosen steps (``step in result``)."""
    if text is None:
        return None
    ranges: list[tuple[int, int]] = []
    try:
        if len(text) > 10_000:
            raise ValueError
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                ranges.append((a, b))
            else:
                ranges.append((int(part), int(part)))
    except ValueError:
        raise AccelsimError(f"--steps {_brief(text)}: expected step numbers like 3, 0,2 or 1-4") from None
    return StepSet(ranges)


def _brief(text: str, n: int = 60) -> str:
    """repr of a user string, cut to ``n`` characters."""
    return repr(text) if len(text) <= n else repr(text[: n - 3]) + "..."


def _select_steps(trace, steps: StepSet | None):
    """Keep only ``steps`` (ops and saved records) of a trace this command loaded. In place: the
    Trace owns an open zip that a copy would share (and close on garbage collection)."""
    if steps is None:
        return trace
    have = sorted({op.step for op in trace.ops})
    first, total = steps.missing(set(have))
    if total:
        more = f" and {total - len(first)} more" if total > len(first) else ""
        raise AccelsimError(f"{display_path(trace.path)}: no ops for step(s) {', '.join(map(str, first))}{more} "
                            f"(recorded steps: {', '.join(map(str, have))})")
    trace.ops = [op for op in trace.ops if op.step in steps]
    trace.saved = [s for s in trace.saved if s.step in steps]
    return trace


def _progress(label: str, quiet: bool):
    from accelsim.report.progress import ProgressBar

    return ProgressBar(label, enabled=not quiet)


def _simulate(trace, hw, *, quiet: bool, timeline: bool = False, label: str | None = None):
    from accelsim.sim import simulate

    if not trace.ops:  # nothing to replay: say so rather than print empty tables (or fail in a plot)
        raise AccelsimError(f"{trace.path}: no conv2d/matmul/bmm ops to simulate (see `accelsim inspect`)")
    bar = _progress(label or f"simulating on {hw.name}", quiet)
    try:
        return simulate(trace, hw, progress=bar, timeline=timeline)
    finally:
        bar.close()


def _trace_line(trace) -> str:
    h = trace.header
    bits = [str(h["model"])] if h.get("model") else []
    method = h.get("method")
    if isinstance(method, dict):
        if method.get("name"):
            bits.append(str(method["name"]))
        # scalar parameters only: per-layer tables (e.g. SWAT-ERK densities) are for `inspect`
        params = {k: v for k, v in (method.get("params") or {}).items()
                  if isinstance(v, (int, float, str, bool)) or v is None}
        text = ", ".join(f"{k}={v}" for k, v in params.items())
        if text:
            bits.append("(" + (text if len(text) <= 48 else text[:45].rsplit(",", 1)[0] + ", ...") + ")")
    elif method:
        bits.append(str(method))
    if h.get("dtype"):
        bits.append(str(h["dtype"]))
    if h.get("batch_size") is not None:
        bits.append(f"batch {h['batch_size']}")
    steps = sorted({op.step for op in trace.ops})
    if steps:
        bits.append(f"step{'s' if len(steps) != 1 else ''} {', '.join(map(str, steps))}")
    bits.append(f"{len(trace.ops)} ops")
    return f"trace  {trace.path}: " + " ".join(bits)


def _hw_line(hw, path: str) -> str:
    sp = hw.sparsity
    if sp.kind == "none":
        feat = "dense"
    elif sp.kind == "nm":
        feat = f"{sp.n}:{sp.m} on {sp.operand}"
    else:
        feat = f"{sp.kind.replace('_', '-')} zero skipping on {sp.operand}"
    from accelsim.hw.families.gpu import MODEL_LABELS, kernel_model_of

    model = kernel_model_of(hw)  # GPU files: which of the two kernel models the numbers are
    extra = f", {MODEL_LABELS[model]}" if model else ""
    return f"hw     {path}: {hw.name} ({hw.family}, {hw.clock_hz / 1e9:g} GHz, {feat}{extra})"


def _footprint(trace, fmt: str | None, hw=None):
    from accelsim.report.compare import footprint_args  # the one choice of run, compare and sweep
    from accelsim.sim.footprint import footprint

    return footprint(trace, **footprint_args(hw, fmt))


def _meta(args, trace, hw_paths: Sequence[str]) -> dict:
    argv = getattr(args, "argv", None)
    argv = sys.argv[1:] if argv is None else argv
    return {"accelsim_version": __version__, "command": " ".join([PROG, *map(str, argv)]),
            "trace": str(trace.path), "trace_header": trace.header, "hw": list(hw_paths)}


# -------------------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    from accelsim.report.table import (coverage_line, fallback_lines, footprint_table, not_simulated_lines, op_table,
                                       step_table, totals_table, vector_table)

    json_path = _output_file(args.json, (".json",), "--json output")
    csv_path = _output_file(args.csv, (".csv",), "--csv output")
    if json_path or csv_path:  # the writers (csv, tempfile) only when a file is asked for
        from accelsim.report.writers import write_csv, write_json
    hw = _open_hw(args.hw)
    trace = _select_steps(_open_trace(args.trace), parse_steps(args.steps))
    t0 = time.monotonic()
    result = _simulate(trace, hw, quiet=args.quiet)
    elapsed = time.monotonic() - t0
    fp = _footprint(trace, args.format, hw)

    out = [_trace_line(trace), _hw_line(hw, args.hw), ""]
    if not args.quiet:
        out += [op_table(result), ""]
        vt = vector_table(result)
        if vt:
            out += ["vector (non-GEMM) work by pass and class:", vt, ""]
    out += [totals_table(result)]
    # the whole training step (issue 10): GEMM, vector and sparsification time, both speedups
    out += ["", "whole training step (GEMMs + non-GEMM vector work; sparsify = the method's own work, "
                "absent on the dense run):", step_table(result), coverage_line(result, trace.header.get("version"))]
    fb = fallback_lines(result)
    if fb:
        out += ["", f"fallbacks (sparsity not used, dense rate charged) in {len(fb)} op(s):"]
        if args.quiet and len(fb) > 3:
            out += [*fb[:3], f"  ... and {len(fb) - 3} more (run without --quiet, or see --csv/--json)"]
        else:
            out += fb
    for w in getattr(result, "warnings", []) or []:
        out.append(f"warning: {w}")
    if args.format:
        why = "--format"
    elif getattr(hw, "storage_format", None):
        why = f"storage_format of {Path(args.hw).name}; --format auto picks the smallest per tensor"
    else:
        why = "smallest per tensor"
    out += ["", f"backward-pass memory footprint, step {fp.step}, format {fp.format} ({why}):", footprint_table(fp)]
    if fp.notes:
        out.append(f"  {len(fp.notes)} saved tensor(s) are not {fp.n}:{fp.m} and count as dense, e.g. {fp.notes[0]}")
    out += [f"\nsimulated {len(result.ops)} ops in {elapsed:.2f} s"]
    from accelsim.report.compare import footprint_summary, headline  # the one headline of run and compare

    out.append(headline(Path(args.trace).name, hw.name, result.totals()["all"], footprint_summary(fp)))
    _print("\n".join(out))
    for line in not_simulated_lines(result):  # loud: on stderr, whatever --quiet says
        _stderr(f"{PROG}: warning: {line}\n")

    if json_path:
        d = result.to_dict()
        from accelsim.hw.families.gpu import kernel_model_of

        d["kernel_model"] = kernel_model_of(hw)  # "ideal" | "library" on a GPU, null elsewhere
        d["meta"] = _meta(args, trace, [args.hw])
        d["footprint"] = fp.to_dict()
        _write(json_path, lambda: write_json(json_path, d))
    if csv_path:
        _write(csv_path, lambda: write_csv(csv_path, result.to_rows()))
    return 0


def cmd_compare(args) -> int:
    """Traces x machines (accelsim/report/compare.py): per pass, speedup vs each trace's own dense
    run and vs the first machine; --csv tidy rows, --json totals and footprints; headlines last."""
    from accelsim.report.compare import Comparison
    from accelsim.report.writers import write_csv, write_json

    json_path = _output_file(args.json, (".json",), "--json output")
    csv_path = _output_file(args.csv, (".csv",), "--csv output")
    if len(args.trace) * len(args.hw) < 2:
        raise AccelsimError("compare needs at least two traces or two --hw machines")
    traces, hws, cells = _compare_cells(args, args.trace)
    cmp = Comparison(cells)
    out = [*(_trace_line(tr) for tr in traces), *(_hw_line(hw, p) for hw, p in zip(hws, args.hw)), "",
           cmp.table(), *cmp.fallback_lines(), "", *cmp.headlines()]
    _print("\n".join(out))
    for line in cmp.warning_lines():  # loud, as in `run`: on stderr, whatever --quiet says
        _stderr(f"{PROG}: warning: {line}\n")
    if json_path:
        meta = _meta(args, traces[0], args.hw)
        meta.pop("trace", None)
        meta.pop("trace_header", None)
        meta["traces"] = [{"path": str(tr.path), "header": tr.header} for tr in traces]
        payload = cmp.to_dict(meta)
        _write(json_path, lambda: write_json(json_path, payload))
    if csv_path:
        _write(csv_path, lambda: write_csv(csv_path, cmp.rows()))
    return 0


def _compare_cells(args, trace_paths: Sequence[str]) -> tuple[list, list, list]:
    """The traces, machines and cells of `compare` and `plot compare` (report/compare.py build_cells):
    every file checked before anything is simulated; traces told apart by name, else by path."""
    from accelsim.hw import catalog
    from accelsim.report.compare import build_cells, labels

    _distinct(trace_paths, lambda p: p, "trace")
    _distinct(args.hw, lambda s: catalog.resolve(s), "--hw machine")
    hws = [_open_hw(p) for p in args.hw]
    steps = parse_steps(args.steps)
    traces = [_select_steps(_open_trace(p), steps) for p in trace_paths]
    for tr in traces:
        if not tr.ops:
            raise AccelsimError(f"{tr.path}: no conv2d/matmul/bmm ops to simulate (see `accelsim inspect`)")
    mnames = labels([hw.name for hw in hws], args.hw)
    tnames = [Path(p).name for p in trace_paths]
    if len(set(tnames)) < len(tnames):  # a/x.npz and b/x.npz: by path (cut), then by position
        tnames = labels([display_path(p) for p in trace_paths])
    cells = build_cells(traces, tnames, hws, args.hw, mnames, fmt=args.format,
                        simulate=lambda tr, hw, label: _simulate(tr, hw, quiet=args.quiet, label=label))
    return traces, hws, cells


def _distinct(items: Sequence[str], key, what: str) -> None:
    """The same file named twice (by another spelling too) is a mistake: one line naming both."""
    seen: dict[str, str] = {}
    for item in items:
        real = os.path.realpath(key(item))
        if real in seen:
            same = "" if seen[real] == item else f" (the same file as {display_path(seen[real])})"
            raise AccelsimError(f"{display_path(item)}: {what} given twice{same}")
        seen[real] = item


def cmd_inspect(args) -> int:
    from accelsim.report.table import format_table, nbytes, si
    from accelsim.trace.inspect import coverage_line, op_rows, saved_summary, vector_summary

    n, m = _parse_nm(args.nm)
    trace = _open_trace(args.trace)
    steps = parse_steps(args.steps)
    trace = _select_steps(trace, steps)
    h = trace.header
    out = [_trace_line(trace)]
    for k, v in h.items():
        if isinstance(v, dict) and v:
            out.append(f"  {k}:")
            for k2, v2 in v.items():
                if k == "meta" and k2 == "coverage":
                    continue  # summed up below (accelsim/trace/inspect.py coverage_line)
                if isinstance(v2, dict) and v2:
                    out.append(f"    {k2}:")
                    out.extend(f"      {k3}: {v3}" for k3, v3 in v2.items())
                else:
                    out.append(f"    {k2}: {v2}")
        else:
            out.append(f"  {k}: {v}")
    out.append(f"  tensors: {len(trace.tensors)}, ops: {len(trace.ops)}, saved records: {len(trace.saved)}")
    out.append(coverage_line(trace))
    out.append("")
    rows = []
    for info in op_rows(trace, n=n, m=m):
        for i, o in enumerate(info.operands):
            rows.append([info.step if i == 0 else "", info.pass_ if i == 0 else "", info.layer if i == 0 else "",
                         info.kind if i == 0 else "", si(info.dense_macs) if i == 0 else "", o.name,
                         "x".join(map(str, o.shape)), o.role, f"{o.density:.3f}",
                         "-" if o.nm is None else f"{o.nm:.3f}"])
    out.append(format_table(["step", "pass", "layer", "kind", "dense MACs", "operand", "shape", "role",
                             "density", f"{n}:{m} along K"], rows, align="rllllrllrr"))
    out.append(f"\n{n}:{m} along K: fraction of groups of {m} along the reduction dim of that pass with at "
               f"most {n} non-zeros (1.000 = fully {n}:{m})")
    vec = vector_summary(trace)
    if vec:
        out.append("\nvector (non-GEMM) work, by pass and class (sparsify: the method's own work):")
        out.append(format_table(["step", "pass", "class", "sparsify", "dedicated", "records", "kernels", "elements",
                                 "bytes read", "bytes written"],
                                [[r["step"], r["pass"], r["class"], "yes" if r["sparsify"] else "", r["dedicated"] or "",
                                  r["records"], r["kernels"], si(r["elements"]), nbytes(r["bytes_read"]),
                                  nbytes(r["bytes_written"])] for r in vec], align="rllllrrrrr"))
    summ = saved_summary(trace)
    if summ:
        out.append("\nsaved for backward:")
        out.append(format_table(["step", "category", "records", "storages", "dense bytes", "density"],
                                [[r["step"], r["category"], r["records"], r["storages"], nbytes(r["bytes"]),
                                  f"{r['density']:.3f}"] for r in summ], align="rlrrrr"))
    else:
        out.append("\nsaved for backward: no records in this trace")
    _print("\n".join(out))
    return 0


FIGURE_EXTS = (".png", ".svg", ".pdf")
TABLE_EXTS = (".parquet", ".csv")


def cmd_plot(args) -> int:
    """Figures: per trace (report/plots.py), from a sweep or compare table (report/sweep_plots.py)."""
    out = _output_file(args.output, FIGURE_EXTS, "-o figure")
    {"sweep": _plot_sweep, "compare": _plot_compare}.get(args.what, _plot_trace)(args, out)
    if not args.quiet:
        _print(f"wrote {out}")
    return 0


def _plot_trace(args, out: Path) -> None:
    from accelsim.report import plots

    top = getattr(args, "top", plots.DEFAULT_TOP)
    if not 1 <= top <= plots.MAX_TOP:
        raise AccelsimError(f"--top {top}: expected 1 to {plots.MAX_TOP} rows (the rest is summed into one)")
    hw = _open_hw(args.hw) if args.hw else None
    trace = _select_steps(_open_trace(args.trace), parse_steps(args.steps))
    title = f"{Path(str(trace.path)).name}" + (f" on {hw.name}" if hw is not None else "")
    if args.what == "memory":
        fp = _footprint(trace, args.format, hw)
        _write(out, lambda: plots.plot_memory(fp, out, title=title, top=top, by=args.by))
    elif args.what == "speedup":
        res = _simulate(trace, hw, quiet=args.quiet)
        _write(out, lambda: plots.plot_speedup(res, out, title=title, top=top, by=args.by))
    else:
        res = _simulate(trace, hw, quiet=args.quiet, timeline=True)
        _write(out, lambda: plots.plot_timeline(res, out, title=title))


def _plot_sweep(args, out: Path) -> None:
    from accelsim.report import sweep_plots as sp

    shown = display_path(args.table)
    df = sp.read_table(_input_file(args.table, TABLE_EXTS, "result table"))
    keys = (args.x, args.y, args.hue, args.col)
    pass_ = args.pass_ or (None if "pass" in keys else "all")
    df = sp.select(df, pass_=pass_, where=args.where or (), shown=shown)
    _write(out, lambda: sp.plot_sweep(df, out, x=args.x, y=args.y, hue=args.hue, col=args.col, kind=args.kind,
                                      title=args.title or "", shown=shown))


def _plot_compare(args, out: Path) -> None:
    """From the CSV `accelsim compare --csv` writes, or from traces simulated on --hw machines
    (the same cells and rows as `accelsim compare`, accelsim/report/compare.py)."""
    from accelsim.report import sweep_plots as sp

    tables = [p for p in args.inputs if Path(p).suffix.lower() in TABLE_EXTS]
    if tables:
        if len(args.inputs) > 1 or args.hw:
            raise AccelsimError("plot compare: give one table from `accelsim compare --csv` (no --hw), "
                                "or traces (.npz) and --hw machines")
        shown = display_path(tables[0])
        df = sp.read_table(_input_file(tables[0], TABLE_EXTS, "result table"))
    else:
        if not args.hw:
            raise AccelsimError("plot compare: traces need --hw machines to simulate on (or give the CSV "
                                "`accelsim compare --csv` wrote)")
        from accelsim.report.compare import Comparison

        _, _, cells = _compare_cells(args, args.inputs)
        pd = sp._pandas()
        df = pd.DataFrame(Comparison(cells).rows())
        shown = "compare"
    frame = sp.compare_frame(df, shown)
    _write(out, lambda: sp.plot_compare(frame, out, title=args.title or ""))


def cmd_gemm(args) -> int:
    """One GEMM, dense and 2:4 (accelsim/gemm.py)."""
    from accelsim.gemm import format_report, gemm_report, parse_dim
    from accelsim.report.writers import write_json

    json_path = _output_file(args.json, (".json",), "--json output")
    m, n, k = (parse_dim(v, nm) for v, nm in ((args.m, "M"), (args.n, "N"), (args.k, "K")))
    rep = gemm_report(m, n, k, _open_hw(args.hw), dtype=args.dtype, sparse=args.sparse, ideal=args.ideal)
    _print(format_report(rep))
    if json_path:
        _write(json_path, lambda: write_json(json_path, rep.to_dict()))
    return 0


def cmd_hw_list(args) -> int:
    from accelsim.hw import catalog

    lines = catalog.list_lines()
    if len(lines) == 1:
        raise AccelsimError(f"no shipped machines found {catalog.not_found_hint()}")
    _print("\n".join(lines))
    return 0


def cmd_record(args) -> int:
    from accelsim.sparsity.spec import METHODS, method_owners, method_params
    from accelsim.training import MODELS, TRAINING_KWARGS, record_training, require_torch

    out = _output_file(args.output, (".npz",), "-o trace")
    kwargs = {k: getattr(args, k) for k in TRAINING_KWARGS}
    # method flags are set only when given: one not for this method is an error (named as a flag);
    # an unknown model or method is record_training's to report
    if args.model in MODELS and args.method in METHODS:
        given = {k: getattr(args, k) for k in method_owners() if hasattr(args, k)}
        method_params(args.method, given, as_flags=True)
        kwargs.update(given)
    require_torch()  # one line naming the install command, before any progress output
    bar = _progress(f"recording {args.model} {args.method}", args.quiet)
    t0 = time.monotonic()
    try:
        path = record_training(args.model, args.method, out, progress=bar, **kwargs)
    finally:
        bar.close()
    if not args.quiet:
        _print(f"wrote {path} ({os.path.getsize(path) / 2**20:.2f} MiB) in {time.monotonic() - t0:.1f} s")
    return 0


def _parse_nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in text.split(":"))
        if not 0 < n < m:  # as hardware files (hw/loader.py): N = M is no sparsity at all
            raise ValueError
    except ValueError:
        raise AccelsimError(f"--nm {text!r}: expected N:M with 0 < N < M, e.g. 2:4") from None
    return n, m


def _write(path: Path, write) -> None:
    """Run ``write()``; a refusal by the OS (full disk, no permission) is a one-line user error."""
    try:
        write()
    except OSError as e:
        raise AccelsimError(f"{path}: cannot write: {e.strerror or e}") from None


def _print(text: str) -> None:
    if sys.stdout is None:  # started with stdout closed (`accelsim run ... >&-`)
        raise AccelsimError("cannot write the results: standard output is closed")
    _flush_stdout(text + "\n")


def _stderr(text: str) -> None:
    """Write a message to stderr; if stderr itself is closed or full there is nobody to tell."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _flush_stdout(text: str = "") -> None:
    """Write ``text`` to stdout and flush; a full device (`> /dev/full`) or an I/O error is a
    one-line error. A closed pipe raises BrokenPipeError (handled quietly in main)."""
    try:
        if sys.stdout is not None:
            if text:
                sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _discard_stdout()
        raise AccelsimError(f"cannot write the results to standard output: {e.strerror or e}") from None


def _occupy_stdout_fd() -> None:
    """Started with stdout closed: put /dev/null on descriptor 1, so that the next file opened
    (say the --json temp file) does not become descriptor 1 and receive stray output."""
    try:
        os.fstat(1)
    except OSError:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            if fd != 1:
                os.dup2(fd, 1)
                os.close(fd)
        except OSError:
            pass


def _discard_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's own flush at exit does not
    fail a second time with a traceback-like 'Exception ignored' (the recipe of the Python docs,
    "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass


# -------------------------------------------------------------------------------------- parser
HW_HELP = ("a shipped machine's name (see 'accelsim hw list', e.g. a100_24) or a hardware YAML file "
           "(docs/hwconfig.md)")
MAIN_EPILOG = """\
examples:
  accelsim run traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/a100_24.yaml
  accelsim compare traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/a100_24.yaml --hw hwconfigs/tensordash.yaml
  accelsim inspect traces/resnet18_cifar_srste_2of4.npz
  accelsim plot memory traces/resnet18_cifar_swat_u90.npz -o memory.png
  accelsim record --model resnet18-cifar --method swat --sparsity 0.9 --steps 1 -o my.npz
  accelsim hw list

Run 'accelsim COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, formatter_class=_fmt(), epilog=MAIN_EPILOG,
                description="Cycle-level simulator of sparse DNN-training accelerators, driven by traces of "
                            "real sparse training.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog="examples:\n" + epilog,
                              formatter_class=_fmt())

    steps_help = "only these recorded steps, e.g. 3, 0,2 or 1-4 (default: all)"

    r = add("run", "simulate a trace on one machine: per-op table, totals per pass, memory footprint",
            "  accelsim run traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/a100_24.yaml\n"
            "  accelsim run traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/tensordash.yaml --quiet \\\n"
            "      --json out.json --csv out.csv\n"
            "  accelsim run traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/tensordash.yaml --format bitmap\n\n"
            "CSV columns are documented in README.md (section 'Output columns').")
    r.add_argument("trace", metavar="TRACE", help="trace file (.npz) from `accelsim record` or accelsim.record")
    r.add_argument("--hw", required=True, metavar="HW", action=_Once, help=HW_HELP)
    r.add_argument("--json", metavar="FILE.json", help="write the full result (per op, totals, footprint) as JSON")
    r.add_argument("--csv", metavar="FILE.csv", help="write one row per op and pass as CSV")
    r.add_argument("--quiet", "-q", action="store_true", help="no per-op table and no progress bar")
    r.add_argument("--steps", metavar="LIST", help=steps_help)
    r.add_argument("--format", choices=FOOTPRINT_FORMATS, default=None,
                   help="storage format for the footprint (default: the hardware file's storage_format, else "
                        "auto = smallest per tensor)")
    r.set_defaults(func=cmd_run)

    c = add("compare", "simulate traces x machines and compare totals per pass (speedup vs dense and vs the "
                       "first machine)",
            "  accelsim compare traces/resnet18_cifar_swat_u90.npz --hw hwconfigs/a100_24.yaml \\\n"
            "      --hw hwconfigs/tensordash.yaml --hw hwconfigs/systolic_32x32_ws.yaml\n"
            "  accelsim compare traces/transformer_block_dense.npz traces/transformer_block_srste_2of4.npz \\\n"
            "      --hw systolic_32x32_ws --hw tensordash --csv cmp.csv --json cmp.json\n\n"
            "CSV columns: docs/sweeps.md (section 'accelsim compare').")
    c.add_argument("trace", metavar="TRACE", nargs="+", help="one or more trace files (.npz)")
    c.add_argument("--hw", action="append", required=True, metavar="HW",
                   help="a shipped machine's name or a hardware file; repeat for several (the first is the "
                        "reference of the 'vs' columns)")
    c.add_argument("--json", metavar="FILE.json",
                   help="write totals per pass, ratios to the first machine and footprint of every trace x machine")
    c.add_argument("--csv", metavar="FILE.csv", help="write one row per trace, machine and pass (incl. all)")
    c.add_argument("--format", choices=FOOTPRINT_FORMATS, default=None,
                   help="storage format for the footprint (default: each hardware file's storage_format, else auto)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    c.add_argument("--steps", metavar="LIST", help=steps_help)
    c.set_defaults(func=cmd_compare, intermixed="trace")  # traces after --hw too (_intermixed)

    i = add("inspect", "show what a trace holds: ops, operand shapes, densities, N:M compliance, saved tensors",
            "  accelsim inspect traces/resnet18_cifar_srste_2of4.npz\n"
            "  accelsim inspect traces/resnet18_cifar_swat_u90.npz --steps 0 --nm 1:4")
    i.add_argument("trace", metavar="TRACE", help="trace file (.npz)")
    i.add_argument("--nm", default="2:4", metavar="N:M", help="structured pattern to check (default 2:4)")
    i.add_argument("--steps", metavar="LIST", help=steps_help)
    i.set_defaults(func=cmd_inspect)

    plot_examples = (
        "  accelsim plot memory traces/resnet50_imagenet_swat_u80.npz -o memory.pdf --by block\n"
        "  accelsim plot speedup traces/resnet18_cifar_swat_u90.npz --hw tensordash -o speedup.svg\n"
        "  accelsim plot timeline traces/resnet18_cifar_swat_u90.npz --hw a100_24 -o tl.png\n"
        "  accelsim plot sweep sweep.csv --x compute.rows --y total_cycles --hue memory.dram.bandwidth \\\n"
        "      --where machine=systolic -o sweep.pdf\n"
        "  accelsim plot compare traces/resnet18_cifar_swat_u90.npz traces/resnet18_cifar_srste_2of4.npz \\\n"
        "      --hw tensordash --hw a100_24 -o compare.pdf")
    pl = add("plot", "draw a figure (.png, .svg or .pdf): memory, speedup, timeline of a trace; sweep (a sweep "
             "table); compare (methods x machines)", plot_examples)
    psub = pl.add_subparsers(dest="what", metavar="FIGURE", parser_class=_Parser)
    psub.required = True
    fig_help = "output figure; the suffix picks the format"

    def figure(name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
        f = psub.add_parser(name, help=help_, description=help_, epilog="examples:\n" + epilog,
                            formatter_class=_fmt())
        f.add_argument("-o", "--output", required=True, metavar="FIG.png|svg|pdf", help=fig_help)
        f.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no 'wrote' line")
        f.set_defaults(func=cmd_plot)
        return f

    lines = plot_examples.splitlines()
    for name, help_ in (("memory", "backward-pass memory per layer: dense vs stored, activations vs weights"),
                        ("speedup", "GEMM speedup vs dense per layer and pass"),
                        ("timeline", "compute / DMA / vector / sparsify activity over time, time per op")):
        f = figure(name, help_, "\n".join(ln for ln in lines if f"plot {name} " in ln))
        f.add_argument("trace", metavar="TRACE", help="trace file (.npz)")
        f.add_argument("--hw", metavar="HW", action=_Once, required=name != "memory",
                       help=HW_HELP + ("" if name != "memory" else " (its storage format and N:M; optional)"))
        f.add_argument("--steps", metavar="LIST", help=steps_help)
        if name == "memory":
            f.add_argument("--format", choices=FOOTPRINT_FORMATS, default=None, help="storage format")
        if name != "timeline":
            f.add_argument("--top", type=int, default=30, metavar="N",
                           help="rows drawn (1-60, default 30): the N largest layers/blocks/stages in recording "
                                "order, the rest summed into one row")
            f.add_argument("--by", choices=("layer", "block", "stage"), default="layer",
                           help="one row per layer (default), per block (module path up to its first number, "
                                "e.g. layer1.0) or per stage (before it, e.g. layer1)")
    i0 = next(i for i, ln in enumerate(lines) if "plot sweep" in ln)
    f = figure("sweep", "line / heatmap / Pareto figure from the table `accelsim sweep` writes (docs/sweeps.md)",
               "\n".join(lines[i0:i0 + 2]) + "\n  accelsim plot sweep sweep.csv --x dram_bytes --y total_cycles "
               "--hue machine --kind pareto -o pareto.png")
    f.add_argument("table", metavar="TABLE", help="results.parquet or results.csv from `accelsim sweep`")
    f.add_argument("--x", required=True, metavar="KEY", help="column on the x axis (a varied key, a metric, or "
                   "a product such as compute.rows*compute.cols); for --kind pareto the cost")
    f.add_argument("--y", default="speedup", metavar="KEY", help="metric on the y axis (default speedup); "
                   "heatmap: the cell colour")
    f.add_argument("--hue", metavar="KEY", help="one line/colour per value; heatmap: the rows")
    f.add_argument("--col", metavar="KEY", help="one panel per value")
    f.add_argument("--kind", choices=("line", "heatmap", "pareto"), default="line", help="figure kind (default line)")
    f.add_argument("--pass", dest="pass_", metavar="PASS", help="rows of this pass (default all; fwd, dgrad, ...)")
    f.add_argument("--where", action="append", metavar="KEY=VALUE", help="keep only matching rows (repeatable)")
    f.add_argument("--title", help="figure title (default none: papers caption their figures)")
    i0 = next(i for i, ln in enumerate(lines) if "plot compare" in ln)
    f = figure("compare", "methods x machines: grouped bars of speedup and backward-memory reduction vs dense",
               "\n".join(lines[i0:i0 + 2]) + "\n  accelsim compare A.npz B.npz --hw X --hw Y --csv cmp.csv && "
               "accelsim plot compare cmp.csv -o compare.png")
    f.add_argument("inputs", nargs="+", metavar="INPUT", help="the CSV `accelsim compare --csv` wrote, or traces (.npz)")
    f.add_argument("--hw", action="append", metavar="HW", help=HW_HELP + " (with traces; repeat for each machine)")
    f.add_argument("--steps", metavar="LIST", help=steps_help)
    f.add_argument("--format", choices=FOOTPRINT_FORMATS, default=None, help="storage format for the memory bars")
    f.add_argument("--title", help="figure title")
    f.set_defaults(intermixed="inputs")  # inputs after --hw too (_intermixed)

    record_help = "train a built-in model with a sparse-training method and record a trace (needs PyTorch)"
    # flags from the method dataclasses: added on first use, so no other command imports them
    sub.add_parser("record", help=record_help, description=record_help, formatter_class=_fmt(),
                   populate=_record_arguments)

    from accelsim.sweep.command import EPILOG as SWEEP_EPILOG, add_arguments as sweep_arguments, cmd_sweep

    sw = add("sweep", "run traces x machine variants (vary:/zip: in a spec) into one table (.parquet/.csv)",
             SWEEP_EPILOG)
    sweep_arguments(sw)
    sw.set_defaults(func=cmd_sweep)

    g = add("gemm", "one GEMM C[M,N] = A[M,K] @ B[K,N] on a GPU: dense vs 2:4 (A sparse) time, TFLOP/s, bound",
            "  accelsim gemm 8192 8192 8192 --hw h100_24 --sparse 2:4\n"
            "  accelsim gemm 1024 256 10240 --hw a100_24 --sparse 2:4 --json g.json")
    g.add_argument("m", metavar="M", help="rows of A and C")
    g.add_argument("n", metavar="N", help="columns of B and C")
    g.add_argument("k", metavar="K", help="reduction dimension")
    g.add_argument("--hw", required=True, metavar="HW", action=_Once, help=HW_HELP + " (gpu family)")
    g.add_argument("--dtype", choices=("fp16", "bf16", "int8", "fp8"), default=None,
                   help="data type (default and only choice: the file's data_type)")
    g.add_argument("--sparse", choices=("2:4",), default=None, help="also run A as an exactly-2:4 operand along K")
    g.add_argument("--ideal", action="store_true",
                   help="the ideal-kernel bound (what the silicon allows) even if the file's kernel_model is "
                        "library (default: the file's kernel_model)")
    g.add_argument("--json", metavar="FILE.json", help="write dense_seconds, sparse_seconds, speedup, ... as JSON")
    g.set_defaults(func=cmd_gemm)

    h = add("hw", "the shipped machines: 'accelsim hw list' prints one line each",
            "  accelsim hw list\n  accelsim run traces/resnet18_cifar_swat_u90.npz --hw a100_24")
    hsub = h.add_subparsers(dest="hw_command", metavar="ACTION", parser_class=_Parser)
    hsub.required = True
    hl = hsub.add_parser("list", help="name, family, clock, dense peak, sparsity and description of each",
                         description="one line per shipped machine (its name works as --hw NAME)")
    hl.set_defaults(func=cmd_hw_list)
    return p


def _record_arguments(rc: argparse.ArgumentParser) -> None:
    """``accelsim record``'s epilog and flags (one per field of TrainingParams and of every method's
    parameter dataclass, sparsity/spec.py)."""
    from accelsim.sparsity.spec import METHOD_SPECS, METHODS, add_flags, method_owners
    from accelsim.training import MODELS, TrainingParams

    models_help, methods_help = ", ".join(MODELS), ", ".join(METHODS)
    rc.epilog = ("examples:\n"
                 "  accelsim record --model resnet18-cifar --method swat --sparsity 0.9 --steps 1 -o swat90.npz\n"
                 "  accelsim record --model transformer-block --method srste --n 2 --m 4 --warmup 50 -o t24.npz\n"
                 "  accelsim record --model resnet50-imagenet --method swat --sparsity 0.8 --distribution erk \\\n"
                 "      --batch 8 -o r50.npz\n\n"
                 f"models:  {models_help}\nmethods: {methods_help}\n"
                 "Each flag maps one to one onto a keyword of accelsim.training.record_training(); a method flag\n"
                 "the chosen method does not use is an error.")
    rc.add_argument("--model", required=True, help=f"built-in model ({models_help})")
    rc.add_argument("--method", required=True, help=f"sparse-training method ({methods_help})")
    rc.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="trace file to write")
    add_flags(rc.add_argument_group("training"), [TrainingParams], suppress=False)
    add_flags(rc.add_argument_group("method parameters (only those of --method)"),
              [s.params for s in METHOD_SPECS.values()], suppress=True, owners=method_owners())
    rc.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    rc.set_defaults(func=cmd_record)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that every ``finally`` and atomic writer
    cleans up (temp files removed, the old output file left as it was) -- as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame) -> None:
    for sig in _SIGNALS:  # a second signal must not interrupt the cleanup the first one started
        signal.signal(sig, signal.SIG_IGN)
    raise _Terminated(signum)


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _install_signal_handlers() -> dict:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in _SIGNALS:
        prev = signal.getsignal(sig)
        if prev is signal.SIG_IGN:  # e.g. started under nohup: keep ignoring
            continue
        old[sig] = prev
        signal.signal(sig, _on_signal)
    return old


def main(argv: Sequence[str] | None = None) -> int:
    # Text that cannot be encoded (a lone surrogate in a layer name, a non-UTF-8 file name) is
    # printed escaped instead of failing with UnicodeEncodeError.
    # (stdout's default is "strict", or "surrogateescape" under the C locale: both fail on a lone
    # surrogate.)
    stream = sys.stdout
    old_errors = getattr(stream, "errors", None)
    changed = hasattr(stream, "reconfigure") and old_errors in ("strict", "surrogateescape")
    if changed:
        stream.reconfigure(errors="backslashreplace")
    if sys.stdout is None:
        _occupy_stdout_fd()
    old_handlers = _install_signal_handlers()
    try:
        return _main(argv)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if changed and stream is sys.stdout and not getattr(stream, "closed", True):
            try:
                stream.reconfigure(errors=old_errors)
            except (OSError, ValueError):
                pass


def _intermixed(parser: argparse.ArgumentParser, args, extra: list[str]) -> None:
    """`compare A.npz --hw X B.npz --hw Y`: argparse fills a list positional from one run of words
    only, so files after an option come back unparsed. A command that takes several files
    (set_defaults(intermixed=DEST)) gets those words appended in order (each is then opened and
    checked as any other); an option it does not know, or words for any other command, stay
    argparse's one-line error."""
    dest = getattr(args, "intermixed", None)
    if dest is None or any(x.startswith("-") for x in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setattr(args, dest, [*getattr(args, dest), *extra])


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra:
                _intermixed(parser, args, extra)
        finally:  # --help / --version print and exit: a full stdout is still one line
            _flush_stdout()
        args.argv = None if argv is None else list(argv)  # for the JSON's meta.command
        code = int(args.func(args) or 0)
        _flush_stdout()
        return code
    except AccelsimError as e:
        _stderr(f"{PROG}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        _stderr(f"\n{PROG}: interrupted\n")
        return 130
    except _Terminated as e:
        _stderr(f"\n{PROG}: terminated by {signal.Signals(e.signum).name}\n")
        return 128 + e.signum
    except BrokenPipeError:  # `accelsim run ... | head`: the reader has what it wanted
        _discard_stdout()
        return 0
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) and e.filename is None:
            # a stream write (stdout/stderr of a full disk) that no command-level handler saw
            _discard_stdout()
            _stderr(f"{PROG}: error: cannot write the results: {e.strerror}\n")
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
