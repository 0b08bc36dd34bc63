"""GPU model: dense vs 2:4 sparse GEMM cycles on the A100 config, and the model's speed.

    python benchmarks/bench_gpu.py [hwconfigs/a100_24.yaml]

Table 1: Mishra et al. 2021 (arXiv 2104.08378) Fig. 3 INT8 GEMMs M = N = 10240 over K, whose
measured sparse speedups are about 1.23x (K=1280), 1.84x (K=10240), 1.94x (K=20480) (docs/sources.md
"NVIDIA A100"). The INT8 machine is a100_24.yaml with the INT8 tensor-core facts of docs/sources.md: 512
MACs/clk per tensor core (624 dense TOPS), mma m16n8k32 dense / m16n8k64 sparse, 1-byte elements,
every CTA tile's K doubled (as CUTLASS's INT8 tiles).
Table 2: FP16 shapes on a100_24.yaml as shipped. Table 3: wall time of the model (plan, traffic,
tile stream and memory engine, dense + sparse) over the GEMMs of a ResNet-50 ImageNet training step
at batch 8 (53 convs + fc, fwd/dgrad/wgrad), without the mask kernels (accelsim/sim/kernels.py).
a100_24.yaml is library-realistic (its kernel parameters are fitted to issue 11's calibration data,
Fig. 3 among them: docs/validation.md cases 4 and 7); pass hwconfigs/a100_24_ideal.yaml for the
ideal-kernel bound.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from accelsim.hw import load_hw
from accelsim.sim import gpu
from accelsim.sim.memory import run_tiles

ROOT = Path(__file__).resolve().parents[1]
MISHRA = {1280: 1.23, 10240: 1.84, 20480: 1.94}


def int8_variant(hw):
    """The INT8 machine the validation cases use (the file's compute.dtypes, hw.families.gpu.with_dtype)."""
    from accelsim.hw.families.gpu import with_dtype
    return with_dtype(hw, "int8")


def cycles(m, n, k, hw, sparse, groups=1, out_bytes=None):
    plan, stream, fixed, _ = gpu.gemm_cost(m, n, k, groups, hw, sparse_a=sparse, out_bytes=out_bytes)
    dram = hw.dram()
    r = run_tiles(stream, bytes_per_cycle=dram.bandwidth_bytes_per_s / hw.clock_hz, latency_cycles=dram.latency_cycles)
    return r.total_cycles + fixed, r.stall_cycles, plan


def row(m, n, k, hw, ref=None, out_bytes=None, alt_out=None):
    d, dst, plan = cycles(m, n, k, hw, False, out_bytes=out_bytes)
    s, sst, _ = cycles(m, n, k, hw, True, out_bytes=out_bytes)
    us = 1e6 / hw.clock_hz
    extra = ""
    if alt_out is not None:
        alt = cycles(m, n, k, hw, False, out_bytes=alt_out)[0] / cycles(m, n, k, hw, True, out_bytes=alt_out)[0]
        extra = f"{alt:12.3f}"
    ref_s = f"{ref:9.2f}" if ref else f"{'':9}"
    print(f"{m:6d} {n:6d} {k:6d} {plan.waves:5d} {plan.split_k:3d} {d * us:10.1f} {s * us:10.1f} "
          f"{dst / d:6.1%} {sst / s:6.1%} {d / s:8.3f}{extra}{ref_s}")


def header(alt=False):
    alt_s = f"{'sp(32b out)':>12}" if alt else ""
    print(f"{'M':>6} {'N':>6} {'K':>6} {'waves':>5} {'spK':>3} {'dense us':>10} {'2:4 us':>10} "
          f"{'dstall':>6} {'sstall':>6} {'speedup':>8}{alt_s}{'measured':>9}")


def resnet50_gemms(batch=8):
    """(M, N, K) of every conv/fc GEMM of ResNet-50 (224x224) in fwd, dgrad and wgrad (workload.py)."""
    convs = [(3, 64, 7, 2, 224)]  # (C, K, R, stride, H_in)
    h, c = 56, 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            convs.append((c, width, 1, 1, h))
            convs.append((width, width, 3, s, h))
            h2 = h // s
            convs.append((width, 4 * width, 1, 1, h2))
            if b == 0:
                convs.append((c, 4 * width, 1, s, h))
            c, h = 4 * width, h2
    out = []
    for cin, k, r, s, hin in convs:
        p = (hin + 2 * (r // 2) - r) // s + 1
        npq = batch * p * p
        out += [(npq, k, cin * r * r), (npq, cin * r * r, k), (cin * r * r, k, npq)]
    out += [(batch, 1000, 2048), (batch, 2048, 1000), (2048, 1000, batch)]
    return out


def main(argv):
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "hwconfigs" / "a100_24.yaml"
    hw = load_hw(path)
    print(f"# {hw.name}: Mishra et al. Fig. 3 INT8 GEMMs (measured speedups, docs/sources.md 'NVIDIA A100'); times and "
          f"'speedup' with INT8 output, 'sp(32b out)' with INT32 output (the paper does not say which)")
    header(alt=True)
    for k in (1280, 2560, 5120, 10240, 20480):
        row(10240, 10240, k, int8_variant(hw), MISHRA.get(k), alt_out=4)
    print(f"\n# {hw.name}: FP16 GEMMs (plain matrices: no implicit-conv reuse)")
    header()
    for m, n, k in ((256, 256, 256), (1024, 1024, 1024), (4096, 4096, 4096), (8192, 8192, 8192),
                    (25088, 64, 576), (576, 64, 25088), (2048, 1000, 8), (8, 1000, 2048)):
        row(m, n, k, hw)
    gemms = resnet50_gemms()
    t0 = time.perf_counter()
    for m, n, k in gemms:
        cycles(m, n, k, hw, False)
        cycles(m, n, k, hw, True)
    dt = time.perf_counter() - t0
    print(f"\n# model wall time, ResNet-50 batch-8 training step: {len(gemms)} GEMMs x (dense + 2:4): {dt:.2f} s")


if __name__ == "__main__":
    main(sys.argv)
