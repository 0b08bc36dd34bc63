"""Whole-process speed of `accelsim run` against a floor, warm and cold numba cache; simulate() alone.

Table 1, on the shipped ResNet-50 trace (traces/resnet50_imagenet_swat_u80.npz):
  floor  the wall time of a fresh Python process that opens the trace with numpy, inflates every
         mask (np.unpackbits) and counts its ones -- the least any run of that trace must do;
  warm   `python -m accelsim run TRACE --hw FILE` per shipped hardware file, numba cache (and
         Python's bytecode cache, as in an installed package) filled by an untimed run first; its
         ratio to the floor (issue 9 target: <= 4x);
  cold   the same with NUMBA_CACHE_DIR an empty directory each run (every jitted function compiled;
         the shipped kernels' machine code, cached there too, generated from their bitcode --
         accelsim/sim/native.py); its ratio to warm (target <= 1.5x).
Each is a fresh process timed from outside (start to exit); the table prints min and median over
--runs runs (quote the median).

Table 2, ResNet-50 ImageNet batch 8 (a recorded trace, not shipped; record it with
`accelsim record --model resnet50-imagenet --method swat --sparsity 0.8 --steps 1 --warmup 20
--batch 8 --lr 0.001 -o out/resnet50_imagenet_swat_u80_b8.npz`, or pass --record): the wall time of
simulate() alone in a fresh process with a warm cache, per shipped hardware file (target <= 1 s).

Run: python benchmarks/bench_speed.py [--runs 5] [--cold-runs 3] [--hw NAME ...] [--b8 PATH] [--record]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "traces" / "resnet50_imagenet_swat_u80.npz"
B8 = ROOT / "out" / "resnet50_imagenet_swat_u80_b8.npz"
RECORD_B8 = ["record", "--model", "resnet50-imagenet", "--method", "swat", "--sparsity", "0.8", "--steps", "1",
             "--warmup", "20", "--batch", "8", "--lr", "0.001", "--quiet", "-o"]

# The floor: numpy only, every mask member inflated and popcounted.
FLOOR = """
import sys, numpy as np
with np.load(sys.argv[1], allow_pickle=False) as f:
    ones = sum(int(np.count_nonzero(np.unpackbits(f[k], bitorder="little"))) for k in f.files if k.startswith("masks/"))
print(ones)
"""

# simulate() alone, timed inside a fresh process (imports, hardware parse and process start excluded).
SIM_ONLY = """
import sys, time
from accelsim.hw import load_hw
from accelsim.sim.engine import simulate
hw = load_hw(sys.argv[2])
t0, c0 = time.perf_counter(), time.process_time()
res = simulate(sys.argv[1], hw)
print(time.perf_counter() - t0, time.process_time() - c0, res.totals()["all"]["total_cycles"])
"""


def _env(cache_dir: str, pycache: str | None = None) -> dict:
    """The child's environment: numba's cache in ``cache_dir``; Python's bytecode cache in
    ``pycache`` (default: next to it), written even where PYTHONDONTWRITEBYTECODE is set, as an
    installed package has its .pyc files -- otherwise every run would compile accelsim's sources."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = cache_dir
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache or os.path.join(os.path.dirname(cache_dir), "pycache")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _wall(cmd: list[str], env: dict, cpu: list[float] | None = None) -> float:
    """Wall seconds of one run of `cmd`; its user + system seconds are appended to `cpu` (a
    second reading, less disturbed than wall time when other work shares the machine)."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    if p.returncode != 0:
        tail = p.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise SystemExit(f"bench_speed: {' '.join(cmd[1:4])}... exited {p.returncode}: {tail[0][:200]}")
    return wall


def _stats(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


def _run_cmd(trace: Path, hw: Path) -> list[str]:
    return [sys.executable, "-m", "accelsim", "run", str(trace), "--hw", str(hw)]


def table_run(trace: Path, hws: list[Path], runs: int, cold_runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        warm_dir = os.path.join(tmp, "warm")
        env = _env(warm_dir)
        floor_cmd = [sys.executable, "-c", FLOOR, str(trace)]
        _wall(floor_cmd, env)  # page cache
        fcpu: list[float] = []
        floor = _stats([_wall(floor_cmd, env, fcpu) for _ in range(runs)])
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"trace {trace.relative_to(ROOT) if trace.is_relative_to(ROOT) else trace}; "
              f"{runs} warm / {cold_runs} cold runs per row, whole process; cpu = user + system; "
              f"load average {load} on {os.cpu_count()} CPUs")
        print(f"floor (numpy: open, unpackbits, count every mask): min {floor[0]:.2f} s, median {floor[1]:.2f} s, "
              f"cpu median {statistics.median(fcpu):.2f} s")
        print(f"{'hardware':<20} {'warm min':>8} {'warm med':>8} {'cpu med':>7} {'x floor':>7} {'cpu x':>6}   "
              f"{'cold min':>8} {'cold med':>8} {'cpu med':>7} {'x warm':>6} {'cpu x':>6}")
        fc = statistics.median(fcpu)
        for hw in hws:
            cmd = _run_cmd(trace, hw)
            _wall(cmd, env)  # fills the warm cache
            wcpu: list[float] = []
            warm = _stats([_wall(cmd, env, wcpu) for _ in range(runs)])
            ccpu: list[float] = []
            cold = _stats([_wall(cmd, _env(os.path.join(tmp, f"cold-{hw.stem}-{k}")), ccpu) for k in range(cold_runs)])
            wc, cc = statistics.median(wcpu), statistics.median(ccpu)
            print(f"{hw.stem:<20} {warm[0]:>8.2f} {warm[1]:>8.2f} {wc:>7.2f} {warm[1] / floor[1]:>6.1f}x "
                  f"{wc / fc:>5.1f}x   {cold[0]:>8.2f} {cold[1]:>8.2f} {cc:>7.2f} {cold[1] / warm[1]:>5.2f}x "
                  f"{cc / wc:>5.2f}x")
        print("targets (issue 9): warm <= 4x floor, cold <= 1.5x warm (medians; 'cpu x': the same ratios of "
              "user + system seconds, steadier when other work shares the machine)")


def table_simulate(trace: Path, hws: list[Path], runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        env = _env(os.path.join(tmp, "warm"))
        print(f"\nsimulate() alone, trace {trace.name} (fresh process each run, warm cache, {runs} runs)")
        print(f"{'hardware':<20} {'min s':>7} {'median s':>8} {'cpu med':>7} {'total cycles':>16}")
        for hw in hws:
            cmd = [sys.executable, "-c", SIM_ONLY, str(trace), str(hw)]
            subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)  # fills the cache
            times, cpus, cycles = [], [], None
            for _ in range(runs):
                p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
                wall, cpu, cycles = p.stdout.split()[-3:]
                times.append(float(wall))
                cpus.append(float(cpu))
            lo, med = _stats(times)
            print(f"{hw.stem:<20} {lo:>7.2f} {med:>8.2f} {statistics.median(cpus):>7.2f} {int(cycles):>16,}")
        print("target (issue 9): <= 1 s per machine, warm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed warm runs per row (default 5)")
    ap.add_argument("--cold-runs", type=int, default=3, help="timed cold-cache runs per row (default 3)")
    ap.add_argument("--hw", nargs="*", default=None, help="hardware file stems (default: every hwconfigs/*.yaml)")
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--b8", type=Path, default=B8, help="the batch-8 ResNet-50 trace for table 2")
    ap.add_argument("--record", action="store_true", help="record the batch-8 trace first if it is missing")
    ap.add_argument("--skip-run", action="store_true", help="table 2 only")
    args = ap.parse_args(argv)
    hws = sorted((ROOT / "hwconfigs").glob("*.yaml"))
    if args.hw:
        hws = [ROOT / "hwconfigs" / f"{h}.yaml" for h in args.hw]
    if not args.skip_run:
        table_run(args.trace, hws, args.runs, args.cold_runs)
    if not args.b8.exists() and args.record:
        args.b8.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "accelsim", *RECORD_B8, str(args.b8)], cwd=ROOT, check=True)
    if args.b8.exists():
        table_simulate(args.b8, hws, args.runs)
    else:
        print(f"\n(table 2 skipped: no {args.b8}; record it with: accelsim {' '.join(RECORD_B8)} {args.b8}"
              f" -- or pass --record)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
