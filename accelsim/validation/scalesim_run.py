"""Run the real SCALE-Sim 3.0 (installed in a separate virtual environment) and collect its
per-layer COMPUTE_REPORT.csv rows.

SCALE-Sim pins numpy < 2.4 and is not a dependency of accelsim, so it lives in its own venv:
``--venv DIR``, else the environment variable ``SCALESIM_VENV``, else ``scalesim-venv`` in the
current directory (``python -m venv scalesim-venv && scalesim-venv/bin/pip install scalesim
'numpy<2.4'``). This module only shells out to it; the committed reference CSVs under
``accelsim/validation/data/`` were produced with ``python -m accelsim.validation.scalesim_run`` and
are what the tests compare against, so CI never needs SCALE-Sim. SCALE-Sim's topologies and
``scale.cfg`` are vendored there too (MIT, ``data/LICENSE.scalesim``; docs/sources.md "SCALE-Sim
topologies and configs").
"""

from __future__ import annotations

import argparse
import configparser
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from accelsim.util.atomic import atomic_write

DATA = Path(__file__).resolve().parent / "data"
# Where SCALE-Sim's venv is: $SCALESIM_VENV, else ./scalesim-venv (relative to the working directory).
DEFAULT_VENV = Path(os.environ.get("SCALESIM_VENV") or "scalesim-venv")
BASE_CFG = DATA / "scale.cfg"   # SCALE-Sim's configs/scale.cfg, vendored unchanged
COLUMNS = ("topology", "layer", "dataflow", "rows", "cols",
           "total_cycles_incl_prefetch", "total_cycles", "stall_cycles")


@dataclass
class ScalesimRun:
    rows: list[dict]        # one per layer, keys = COLUMNS
    wall_s: float
    version: str
    command: str


def scalesim_version(venv: Path = DEFAULT_VENV) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('scalesim'), m.version('numpy'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return f"scalesim {out[0]} (numpy {out[1]})"


def write_config(base_cfg: Path, out: Path, *, dataflow: str, rows: int, cols: int) -> None:
    """Copy SCALE-Sim's scale.cfg, changing only the array size, dataflow and run name."""
    cfg = configparser.ConfigParser()
    cfg.optionxform = str  # keep SCALE-Sim's key spelling
    cfg.read(base_cfg)
    cfg["general"]["run_name"] = f"run_{rows}x{cols}_{dataflow}"
    cfg["architecture_presets"]["ArrayHeight"] = str(rows)
    cfg["architecture_presets"]["ArrayWidth"] = str(cols)
    cfg["architecture_presets"]["Dataflow"] = dataflow
    with open(out, "w") as fh:
        cfg.write(fh)


def layer_names(topology: Path) -> list[str]:
    """Layer names in SCALE-Sim's own parsing order (first line header, blank lines skipped)."""
    names = []
    with open(topology) as fh:
        for i, row in enumerate(fh):
            row = row.strip()
            if i == 0 or not row:
                continue
            names.append(row.split(",")[0].strip())
    return names


def run_scalesim(topology: Path, *, dataflow: str, rows: int, cols: int,
                 venv: Path = DEFAULT_VENV, base_cfg: Path = BASE_CFG,
                 nice: bool = True) -> ScalesimRun:
    """Run SCALE-Sim on one topology/array/dataflow and return its COMPUTE_REPORT rows."""
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        tmp = Path(tmp)
        cfg = tmp / "run.cfg"
        write_config(base_cfg, cfg, dataflow=dataflow, rows=rows, cols=cols)
        # With custom layouts off (scale.cfg) SCALE-Sim only parses the layout file; the topology
        # file itself parses, so it is passed as the layout.
        cmd = [str(venv / "bin" / "python"), "-m", "scalesim.scale", "-t", str(topology),
               "-l", str(topology), "-c", str(cfg), "-p", str(tmp / "out"), "-s", "N"]
        if nice:
            cmd = ["nice", "-n", "19"] + cmd
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        report = next((tmp / "out").rglob("COMPUTE_REPORT.csv"))
        out = parse_compute_report(report, topology, dataflow=dataflow, rows=rows, cols=cols)
        shown = " ".join(_portable(c, tmp, venv) for c in cmd)
    return ScalesimRun(rows=out, wall_s=wall, version=scalesim_version(venv), command=shown)


def _portable(arg: str, tmp: Path | None = None, venv: Path | None = None) -> str:
    """A command-line word as it may be written into a committed file: no temporary directory,
    no venv location and no absolute path of this machine (paths under the working directory are
    made relative)."""
    if tmp is not None:
        arg = arg.replace(str(tmp), "<tmpdir>")
    if venv is not None:
        arg = arg.replace(str(venv), "$SCALESIM_VENV")
    if os.path.isabs(arg):
        try:
            return os.path.relpath(arg) if Path(arg).resolve().is_relative_to(Path.cwd().resolve()) else Path(arg).name
        except ValueError:
            return Path(arg).name
    return arg


def parse_compute_report(report: Path, topology: Path, *, dataflow: str, rows: int,
                         cols: int) -> list[dict]:
    """Rows of a SCALE-Sim COMPUTE_REPORT.csv keyed by COLUMNS (layer names from the topology)."""
    names = layer_names(topology)
    with open(report) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    out = []
    for ln in lines[1:]:
        v = [x.strip() for x in ln.split(",")]
        out.append(dict(topology=topology.stem, layer=names[int(v[0])], dataflow=dataflow,
                        rows=rows, cols=cols, total_cycles_incl_prefetch=int(float(v[1])),
                        total_cycles=int(float(v[2])), stall_cycles=int(float(v[3]))))
    return out


def write_reference(path: Path, runs: list[ScalesimRun], note: str) -> None:
    """Write the collected rows as a CSV with a '#' comment header saying how they were made."""
    with atomic_write(path, "w") as fh:
        fh.write(f"# SCALE-Sim reference cycles, produced by {runs[0].version}\n")
        fh.write(f"# via accelsim/validation/scalesim_run.py: {note}\n")
        fh.write("# base config: scale.cfg (SCALE-Sim repo configs/scale.cfg, copy in accelsim/validation/data/scale.cfg)\n")
        fh.write("# with only ArrayHeight/ArrayWidth/Dataflow changed; topologies from SCALE-Sim's topologies/\n")
        fh.write("# example command: " + runs[0].command + "\n")
        fh.write("# columns: COMPUTE_REPORT.csv 'Total Cycles (incl. prefetch)', 'Total Cycles', 'Stall Cycles'\n")
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in runs:
            w.writerows(r.rows)


def read_reference(path: Path) -> list[dict]:
    with open(path) as fh:
        rows = list(csv.DictReader(ln for ln in fh if not ln.startswith("#")))
    for r in rows:
        for k in COLUMNS[3:]:
            r[k] = int(r[k])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Regenerate SCALE-Sim reference CSVs (needs the scalesim venv).")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                   help="SCALE-Sim's venv (default $SCALESIM_VENV, else ./scalesim-venv)")
    p.add_argument("--base-cfg", type=Path, default=BASE_CFG,
                   help="SCALE-Sim config to copy (default: the vendored scale.cfg)")
    p.add_argument("--topology", type=Path, required=True)
    p.add_argument("--dataflows", default="ws")
    p.add_argument("--arrays", default="32", help="comma-separated square array sizes")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    runs = []
    for df in a.dataflows.split(","):
        for n in (int(x) for x in a.arrays.split(",")):
            r = run_scalesim(a.topology, dataflow=df, rows=n, cols=n, venv=a.venv, base_cfg=a.base_cfg)
            print(f"{a.topology.stem} {df} {n}x{n}: {len(r.rows)} layers, {r.wall_s:.1f} s", flush=True)
            runs.append(r)
            words = [_portable(w, venv=a.venv) for w in (argv or sys.argv[1:])]
            write_reference(a.out, runs, " ".join(["python -m accelsim.validation.scalesim_run"] + words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
