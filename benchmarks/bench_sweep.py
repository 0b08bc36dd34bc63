"""Sweep throughput (issue 12): points per second of `accelsim sweep` for --jobs 1, --jobs 2 and a
2-worker Dask LocalCluster (worker processes) on the ResNet-18 SWAT-90 trace x systolic and
tensordash variants. Target: 1,000 points in <= 5 min with --jobs 2 on 2 cores.

    python benchmarks/bench_sweep.py                 # 1,000 points per mode
    python benchmarks/bench_sweep.py --points 100    # a shorter run; extrapolate (it says so)
    python benchmarks/bench_sweep.py --modes jobs2   # one mode only

Every mode starts with an empty cache; the tables of all modes are checked to be identical.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "traces" / "resnet18_cifar_swat_u90.npz"


def write_spec(d: Path, points: int) -> Path:
    """About ``points`` points, half systolic (rows x cols x DRAM bandwidth), half tensordash
    (lookahead x DRAM bandwidth)."""
    sys_n, td_n = points - points // 2, points // 2
    dims = [16, 32, 64, 128]
    nb_sys = max(1, math.ceil(sys_n / len(dims) ** 2))
    look = [1, 2, 3, 4]
    nb_td = max(1, math.ceil(td_n / len(look)))
    text = (f"traces: ['{TRACE.as_posix()}']\nmachines:\n"
            f"  - hw: systolic_32x32_ws\n    name: systolic\n    vary:\n"
            f"      compute.rows: {dims}\n      compute.cols: {dims}\n"
            f"      memory.dram.bandwidth: [{', '.join(f'{b} words/cycle' for b in range(4, 4 + nb_sys))}]\n"
            f"  - hw: tensordash\n    vary:\n      sparsity.lookahead: {look}\n"
            f"      memory.dram.bandwidth: [{', '.join(f'{64 + 8 * b} GB/s' for b in range(nb_td))}]\n")
    p = d / "bench_sweep.yaml"
    p.write_text(text)
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--modes", default="jobs1,jobs2,dask2", help="comma list of jobs1, jobs2, dask2")
    args = ap.parse_args()
    from accelsim.sweep import load_spec, run_sweep

    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        spec = load_spec(write_spec(d, args.points))
        n = len(spec.points)
        print(f"{n} points (ResNet-18 SWAT-90 x systolic {sum(p.machine == 'systolic' for p in spec.points)}"
              f" + tensordash {sum(p.machine == 'tensordash' for p in spec.points)}), {os.cpu_count()} CPUs")
        tables = {}
        for mode in args.modes.split(","):
            out = d / f"{mode}.parquet"
            t0 = time.perf_counter()
            if mode == "dask2":
                from distributed import LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
                    t1 = time.perf_counter()
                    _, st = run_sweep(spec, out, scheduler=cl.scheduler_address, cache=d / f"cache-{mode}")
                    run_s = time.perf_counter() - t1
            else:
                _, st = run_sweep(spec, out, jobs=int(mode[-1]), cache=d / f"cache-{mode}")
                run_s = time.perf_counter() - t0
            wall = time.perf_counter() - t0
            tables[mode] = out.read_bytes()
            per_1000 = 1000 / (n / wall) if n else float("nan")
            print(f"{mode:6s} {n / wall:7.2f} points/s  ({wall:.1f} s wall incl. start-up, sweep {run_s:.1f} s; "
                  f"{st.failed} failed) -> 1,000 points in {per_1000 / 60:.1f} min"
                  + ("" if n >= 1000 else " (extrapolated)"))
        same = len(set(tables.values())) <= 1
        print(f"tables identical across modes: {same}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
