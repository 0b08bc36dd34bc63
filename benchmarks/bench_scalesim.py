"""accelsim's systolic model next to the real SCALE-Sim 3.0: per-layer cycles and wall times.

    python benchmarks/bench_scalesim.py [--topology T.csv] [--dataflow ws] [--array 32]

Needs SCALE-Sim in its own venv (numpy < 2.4): --venv DIR, else $SCALESIM_VENV, else ./scalesim-venv:
    python -m venv scalesim-venv && scalesim-venv/bin/pip install scalesim 'numpy<2.4'
Without it, prints accelsim's numbers and the committed SCALE-Sim reference where one exists.
SCALE-Sim runs under `nice` (it simulates memory cycle by cycle: minutes for ResNet-18).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from accelsim.validation.case_systolic import DATA, REFERENCE_FILES, systolic_hw
from accelsim.validation.scalesim_run import DEFAULT_VENV, read_reference, run_scalesim
from accelsim.validation.systolic_ref import read_topology


def accelsim_layers(topology: Path, dataflow: str, rows: int, cols: int) -> tuple[list[int], float]:
    from accelsim.sim import systolic
    from accelsim.sim.engine import simulate_op
    from accelsim.sim.workload import gemm_workload
    hw = systolic_hw(rows, cols, dataflow)
    out = []
    t0 = time.perf_counter()
    for layer in read_topology(topology):
        m, n, k = layer.gemm
        w = gemm_workload(m, n, k)
        out.append(systolic.op_cost(w, hw, sparse=False, schedule="scalesim").compute_cycles)
        simulate_op(w, hw)  # compute model + memory engine, as `accelsim run` does
    return out, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topology", type=Path, default=DATA / "Resnet18.csv")
    p.add_argument("--dataflow", default="ws", choices=("os", "ws", "is"))
    p.add_argument("--array", type=int, default=32)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    a = p.parse_args()
    names = [l.name for l in read_topology(a.topology)]
    ours, t_ours = accelsim_layers(a.topology, a.dataflow, a.array, a.array)
    ref, t_ref, how = None, None, ""
    if (a.venv / "bin" / "python").exists():
        r = run_scalesim(a.topology, dataflow=a.dataflow, rows=a.array, cols=a.array, venv=a.venv)
        ref, t_ref, how = r.rows, r.wall_s, f"live run, {r.version}"
    else:
        for f in REFERENCE_FILES:
            rows = [x for x in read_reference(f) if x["topology"] == a.topology.stem
                    and x["dataflow"] == a.dataflow and x["rows"] == a.array and x["cols"] == a.array]
            if rows:
                ref, how = rows, f"committed reference {f.name} (no venv at {a.venv})"
                break
    print(f"{a.topology.name} {a.dataflow} {a.array}x{a.array}; SCALE-Sim: {how or 'not available'}")
    print(f"{'layer':12s} {'accelsim':>10s} {'SCALE-Sim+1':>12s} {'equal':>6s}")
    ok = True
    for i, name in enumerate(names):
        s = None if ref is None else ref[i]["total_cycles"] - ref[i]["stall_cycles"] + 1
        ok &= s is None or s == ours[i]
        print(f"{name:12s} {ours[i]:10d} {'-' if s is None else s:>12} {'' if s is None else str(s == ours[i]):>6s}")
    print(f"total cycles: accelsim {sum(ours)}" + ("" if ref is None else
          f", SCALE-Sim {sum(x['total_cycles'] - x['stall_cycles'] + 1 for x in ref)}"))
    print(f"wall time: accelsim {t_ours:.2f} s (compute model + memory engine, all layers)"
          + ("" if t_ref is None else f", SCALE-Sim {t_ref:.1f} s ({t_ref / t_ours:.0f}x)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
