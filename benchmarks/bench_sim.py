"""Simulator speed: prints a table (wall time, cycles, peak memory).

1. ResNet-18 from SCALE-Sim's topology file (batch 1, no padding, SCALE-Sim's GEMM dims) on
   hwconfigs/systolic_32x32_ws.yaml: wall time and compute cycles (== SCALE-Sim's stall-free count).
2. A ResNet-50 ImageNet-shape training step (fwd + dgrad + wgrad of every conv and the FC layer),
   batch 8, on tensordash.yaml and a100_24.yaml. Without --trace the trace is SYNTHETIC: written
   with TraceWriter, every mask i.i.d. random at a density drawn per tensor from 50-90%. With
   --trace PATH that recorded trace is used instead (e.g. a real one from
   `accelsim record --model resnet50-imagenet --method swat --sparsity 0.8 --steps 1 --warmup 2
   --batch 8 --lr 0.001 -o r50_b8.npz`); the table says which.

Run: python benchmarks/bench_sim.py [--batch 8] [--trace PATH] [--skip-resnet50] [--hw NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOPO = ROOT / "accelsim" / "validation" / "data" / "Resnet18.csv"  # SCALE-Sim topology, vendored (MIT)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resnet50_layers(image: int = 224) -> list[dict]:
    """(name, C, H, W, K, R, S, stride, padding) of torchvision ResNet-50's convs + the FC layer."""
    layers = [dict(name="conv1", c=3, h=image, k=64, r=7, st=2, pad=3)]
    h = image // 4  # after the stride-2 conv1 and the stride-2 max pool
    cin = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for b in range(blocks):
            st = 2 if (b == 0 and stage > 0) else 1
            pre = f"layer{stage + 1}.{b}"
            layers.append(dict(name=f"{pre}.conv1", c=cin, h=h, k=width, r=1, st=1, pad=0))
            layers.append(dict(name=f"{pre}.conv2", c=width, h=h, k=width, r=3, st=st, pad=1))
            ho = (h + 2 - 3) // st + 1
            layers.append(dict(name=f"{pre}.conv3", c=width, h=ho, k=4 * width, r=1, st=1, pad=0))
            if b == 0:
                layers.append(dict(name=f"{pre}.downsample", c=cin, h=h, k=4 * width, r=1, st=st, pad=0))
            cin, h = 4 * width, ho
    return layers


def write_resnet50_trace(path: Path, batch: int = 8, seed: int = 0, image: int = 224) -> Path:
    """Synthetic ResNet-50 training-step trace: random masks at 50-90% density (stated in output)."""
    from accelsim.sim.workload import conv_params
    from accelsim.trace.format import Operand, TraceWriter

    rng = np.random.default_rng(seed)

    def mask(shape):
        return rng.random(shape, dtype=np.float32) < rng.uniform(0.5, 0.9)

    seq = 0
    with TraceWriter(path, {"model": "resnet50-imagenet (synthetic masks 50-90%)", "batch_size": batch,
                            "steps": [0]}) as tw:
        def op(pass_, kind, layer, operands, out, params):
            nonlocal seq
            tw.add_op(step=0, seq=seq, pass_=pass_, kind=kind, layer=layer, module_type="", aten="",
                      operands=operands, out_shape=list(out), params=params)
            seq += 1

        for L in resnet50_layers(image):
            p = conv_params(batch, L["c"], L["h"], L["h"], L["k"], L["r"], L["r"], stride=L["st"], padding=L["pad"])
            n, c, hh, ww = p["input_shape"]
            _, k, po, qo = p["output_shape"]
            x = tw.add_tensor(mask((n, c, hh, ww)), dtype="float32", role="activation", layer=L["name"])
            w = tw.add_tensor(mask(tuple(p["weight_shape"])), dtype="float32", role="weight", layer=L["name"])
            g = tw.add_tensor(mask((n, k, po, qo)), dtype="float32", role="grad_output", layer=L["name"])
            op("fwd", "conv2d", L["name"], [Operand("input", x), Operand("weight", w)], (n, k, po, qo), p)
            op("dgrad", "conv2d", L["name"], [Operand("grad_output", g), Operand("weight", w)], (n, c, hh, ww), p)
            op("wgrad", "conv2d", L["name"], [Operand("grad_output", g), Operand("input", x)],
               tuple(p["weight_shape"]), p)
        a = tw.add_tensor(mask((batch, 2048)), dtype="float32", role="activation", layer="fc")
        wf = tw.add_tensor(mask((1000, 2048)), dtype="float32", role="weight", layer="fc")
        gf = tw.add_tensor(mask((batch, 1000)), dtype="float32", role="grad_output", layer="fc")
        op("fwd", "matmul", "fc", [Operand("a", a), Operand("b", wf, True)], (batch, 1000), {})
        op("dgrad", "matmul", "fc", [Operand("a", gf), Operand("b", wf)], (batch, 2048), {})
        op("wgrad", "matmul", "fc", [Operand("a", gf, True), Operand("b", a)], (1000, 2048), {})
    return path


def bench_resnet18_scalesim() -> dict:
    """SCALE-Sim ResNet-18 topology on the 32x32 WS array (dense GEMMs of SCALE-Sim's dims)."""
    from accelsim.hw import load_hw
    from accelsim.sim import systolic
    from accelsim.sim.engine import simulate_op
    from accelsim.sim.workload import gemm_workload

    hw = load_hw(ROOT / "hwconfigs" / "systolic_32x32_ws.yaml")
    with open(TOPO, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and r[0].strip()][1:]
    t0 = time.perf_counter()
    cycles = total = ref = 0
    for r in rows:
        h, w, fr, fs, c, k, st = (int(x) for x in r[1:8])
        m = math.ceil((h - fr + st) / st) * math.ceil((w - fs + st) / st)  # SCALE-Sim: no padding
        kk = fr * fs * c
        work = gemm_workload(m, k, kk, layer=r[0].strip())
        res, _ = simulate_op(work, hw)
        cycles += res.compute_cycles - 1  # SCALE-Sim's "Total Cycles" per layer
        total += res.total_cycles
        ref += systolic.scalesim_total_cycles(m, k, kk, 32, 32, "ws")
    wall = time.perf_counter() - t0
    return {"case": "ResNet-18 (SCALE-Sim topology, b1) on systolic_32x32_ws", "wall_s": wall,
            "cycles": cycles, "note": f"SCALE-Sim formula {ref}; with DRAM stalls {total}"}


def bench_trace(trace: Path, hw_name: str, label: str) -> dict:
    from accelsim.sim.engine import simulate

    t0 = time.perf_counter()
    res = simulate(trace, ROOT / "hwconfigs" / f"{hw_name}.yaml")
    wall = time.perf_counter() - t0
    t = res.totals()["all"]
    return {"case": f"ResNet-50 train step ({label}) on {hw_name}", "wall_s": wall,
            "cycles": t["total_cycles"],
            "note": f"{t['ops']} ops, speedup {t['speedup']:.2f}x (compute only {t['compute_speedup']:.2f}x), "
                    f"sparsity fallbacks {t['fallbacks']}, "
                    f"peak RSS {_peak_rss_mb():.0f} MB"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trace", type=Path, default=None, help="use this trace instead of a synthetic one")
    ap.add_argument("--skip-resnet50", action="store_true")
    ap.add_argument("--hw", nargs="*", default=["tensordash", "a100_24"])
    args = ap.parse_args(argv)
    rows = [bench_resnet18_scalesim()]
    if not args.skip_resnet50:
        with tempfile.TemporaryDirectory() as tmp:
            trace = args.trace
            label = f"trace {trace}" if trace is not None else f"b{args.batch} synthetic 50-90%"
            if trace is None:
                t0 = time.perf_counter()
                trace = write_resnet50_trace(Path(tmp) / "resnet50_b8.accelsim-trace", batch=args.batch)
                print(f"(synthetic ResNet-50 trace written in {time.perf_counter() - t0:.1f} s; "
                      f"masks i.i.d. random at 50-90% density)", file=sys.stderr)
            for hw in args.hw:
                rows.append(bench_trace(trace, hw, label))
    w = max(len(r["case"]) for r in rows)
    print(f"{'case':<{w}}  {'wall s':>8}  {'cycles':>14}  note")
    for r in rows:
        print(f"{r['case']:<{w}}  {r['wall_s']:>8.2f}  {r['cycles']:>14,}  {r['note']}")
    print(f"peak RSS of this process: {_peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
