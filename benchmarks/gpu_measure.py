"""Measure dense vs 2:4 GEMMs on a CUDA GPU for accelsim's library-realistic GPU model (issue 11 §2).

    python benchmarks/gpu_measure.py [--out accelsim/validation/data/measured_<gpu>.csv] [--quick]

Runs on a machine with an NVIDIA GPU (sm80+) and PyTorch with CUDA; never in CI (the tests import it
and check its CSV rows with fake timings only). What it measures, each as the median of many timed
runs (CUDA events) after warm-up, on random data, with the card's clocks as found (it never changes
clocks or power limits; it records them):

* C[M,N] = A[M,K] @ B[K,N] with A the 2:4 operand (mma.sp's and cuSPARSELt's convention), dense
  (torch.mm) vs torch.sparse.to_sparse_semi_structured with the cuSPARSELt and the CUTLASS backend,
  fp16 and bf16 (int8 where the backend takes it: dense through torch._int_mm), over an
  M = N = 10240 K sweep (Mishra et al.'s Fig. 3 shapes), squares 1024 .. 16384 and transformer
  linear shapes (BERT-base, Llama-7B projections at 2048 and 8192 tokens);
* the time to prune a dense operand to 2:4 (magnitude, 2 of every 4 along K) and to compress it
  (to_sparse_semi_structured), i.e. what run-time sparsity pays per use;
* an MLP block (Linear d->4d, GELU, Linear 4d->d) forward + backward with 2:4 weights vs dense.

Output: a CSV in the columns of accelsim/validation/data/a100_24_library.csv plus a ``gpu`` column
(the shipped machine: a100_24 / h100_24 / h200_24 when the name says so) and the environment
(GPU name, SM and memory clocks seen before and after, power limit, driver, CUDA, torch and
cuSPARSELt versions), so accelsim/validation/a100_library_data.load reads it; half of the GEMM
shapes are marked ``calibrate`` and half ``validate`` (alternating in a fixed order), as issue 11
asks. Prune / compress / MLP rows go to a second file (``<out>_extra.csv``). Files are written
atomically. A full run takes a few minutes on an H100/H200 (``--quick``: one shape per group).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K_SWEEP = tuple((10240, 10240, k) for k in (1280, 2560, 5120, 10240, 20480))
SQUARES = tuple((s, s, s) for s in (1024, 2048, 4096, 8192, 16384))
# (M, N, K): the 2:4 weight is M x K (out x in features), N = tokens
TRANSFORMER = tuple((o, t, i) for t in (2048, 8192)
                    for o, i in ((768, 3072), (3072, 768), (4096, 4096), (11008, 4096), (4096, 11008)))
SHAPE_GROUPS = {"k_sweep": K_SWEEP, "squares": SQUARES, "transformer": TRANSFORMER}
BACKENDS = ("cusparselt", "cutlass")
DTYPES = ("fp16", "bf16", "int8")
GEMM_COLUMNS = ("gpu", "source", "role", "dtype", "dense_kernel", "sparse_kernel", "batch", "m", "k", "n",
                "dense_us", "sparse_us", "speedup", "conditions", "group", "dense_runs", "sparse_runs",
                "gpu_name", "driver", "cuda", "torch", "cusparselt", "note")
EXTRA_COLUMNS = ("kind", "gpu", "gpu_name", "dtype", "backend", "shape", "dense_us", "sparse_us", "us",
                 "runs", "conditions", "driver", "cuda", "torch", "cusparselt", "note")


@dataclass
class Env:
    """Where the numbers were measured; clocks as found, never set."""
    gpu_name: str = "unknown"
    driver: str = ""
    cuda: str = ""
    torch: str = ""
    cusparselt: str = ""
    sm_clock_mhz: str = ""        # before the run
    sm_clock_after_mhz: str = ""  # after it (under load it may differ)
    max_sm_clock_mhz: str = ""
    mem_clock_mhz: str = ""
    power_limit_w: str = ""

    @property
    def machine(self) -> str:
        """The shipped accelsim machine of this GPU, or the GPU's own name."""
        for tag, name in (("H200", "h200_24"), ("H100", "h100_24"), ("A100", "a100_24")):
            if tag in self.gpu_name:
                return name
        return self.gpu_name

    @property
    def conditions(self) -> str:
        return (f"clocks as found: SM {self.sm_clock_mhz} -> {self.sm_clock_after_mhz} MHz (max "
                f"{self.max_sm_clock_mhz}), memory {self.mem_clock_mhz} MHz, power limit {self.power_limit_w} W")


@dataclass
class GemmResult:
    group: str
    dtype: str
    backend: str  # the 2:4 backend (cusparselt | cutlass)
    m: int
    n: int
    k: int
    dense_us: float | None
    sparse_us: float | None
    dense_runs: int = 0
    sparse_runs: int = 0
    note: str = ""


@dataclass
class ExtraResult:
    kind: str  # "prune" | "compress" | "mlp"
    dtype: str
    backend: str
    shape: str
    dense_us: float | None = None
    sparse_us: float | None = None
    us: float | None = None
    runs: int = 0
    note: str = ""


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def roles(results: list[GemmResult]) -> list[str]:
    """calibrate / validate, alternating over the distinct (group, M, N, K) shapes in the order they
    were measured: half the shapes may calibrate, the other half validate (issue 11); every dtype and
    backend of one shape shares its role."""
    order: dict[tuple, str] = {}
    for r in results:
        key = (r.group, r.m, r.n, r.k)
        if key not in order:
            order[key] = ("calibrate", "validate")[len(order) % 2]
    return [order[(r.group, r.m, r.n, r.k)] for r in results]


def gemm_rows(env: Env, results: list[GemmResult], source: str) -> list[dict]:
    """The GEMM CSV rows (GEMM_COLUMNS) of ``results``."""
    out = []
    for r, role in zip(results, roles(results)):
        out.append({
            "gpu": env.machine, "source": source, "role": role, "dtype": r.dtype,
            "dense_kernel": "torch._int_mm" if r.dtype == "int8" else "torch.mm",
            "sparse_kernel": f"to_sparse_semi_structured ({r.backend})", "batch": 1,
            "m": r.m, "k": r.k, "n": r.n, "dense_us": _fmt(r.dense_us), "sparse_us": _fmt(r.sparse_us),
            "speedup": "",  # both times given: the loader's speedup is dense_us / sparse_us
            "conditions": env.conditions, "group": r.group, "dense_runs": r.dense_runs,
            "sparse_runs": r.sparse_runs, "gpu_name": env.gpu_name, "driver": env.driver, "cuda": env.cuda,
            "torch": env.torch, "cusparselt": env.cusparselt, "note": r.note})
    return out


def extra_rows(env: Env, results: list[ExtraResult]) -> list[dict]:
    return [{"kind": r.kind, "gpu": env.machine, "gpu_name": env.gpu_name, "dtype": r.dtype, "backend": r.backend,
             "shape": r.shape, "dense_us": _fmt(r.dense_us), "sparse_us": _fmt(r.sparse_us), "us": _fmt(r.us),
             "runs": r.runs, "conditions": env.conditions, "driver": env.driver, "cuda": env.cuda,
             "torch": env.torch, "cusparselt": env.cusparselt, "note": r.note} for r in results]


def csv_text(rows: list[dict], columns: tuple[str, ...], header: str) -> str:
    """CSV text: ``#`` comment lines (the loader skips them), then the column row and ``rows``."""
    buf = io.StringIO()
    for line in header.splitlines():
        buf.write(f"# {line}\n")
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write(path: Path, text: str) -> None:
    from accelsim.util.atomic import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        fh.write(text)


# ---- the measurements (CUDA only) ------------------------------------------------------------

def _smi(fields: str) -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
        return [x.strip() for x in out[0].split(",")] if out else []
    except (OSError, subprocess.SubprocessError):
        return []


def environment(torch) -> Env:
    env = Env(torch=torch.__version__, cuda=str(torch.version.cuda))
    env.gpu_name = torch.cuda.get_device_name(0)
    try:
        env.cusparselt = str(torch.backends.cusparselt.version())
    except Exception as e:  # noqa: BLE001 -- recorded, not fatal
        env.cusparselt = f"unavailable ({type(e).__name__})"
    q = _smi("driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit")
    if len(q) == 5:
        env.driver, env.sm_clock_mhz, env.max_sm_clock_mhz, env.mem_clock_mhz, env.power_limit_w = q
    return env


def time_us(torch, fn, *, warmup: int = 10, min_runs: int = 20, max_runs: int = 200,
            target_s: float = 0.25) -> tuple[float, int]:
    """(median microseconds, runs) of ``fn`` on the current stream: warm-up, then as many runs as fit
    ``target_s`` within [min_runs, max_runs], each timed by a pair of CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = max(time.perf_counter() - t0, 1e-6)
    runs = int(min(max_runs, max(min_runs, target_s / est)))
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times), runs


def prune_2_4(torch, a):
    """Magnitude 2:4 along K (dim 1): keep the two largest of every four."""
    m, k = a.shape
    g = a.reshape(m, k // 4, 4)
    idx = g.abs().float().topk(2, dim=-1).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, idx, True)
    return (g * mask).reshape(m, k)


def to_semi_structured(torch, a, backend: str):
    sparse = torch.sparse
    cls = {"cutlass": getattr(sparse, "SparseSemiStructuredTensorCUTLASS", None),
           "cusparselt": getattr(sparse, "SparseSemiStructuredTensorCUSPARSELT", None)}[backend]
    if cls is not None:
        return cls.from_dense(a)
    sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"  # older torch
    return sparse.to_sparse_semi_structured(a)


def _rand(torch, shape, dtype):
    if dtype == torch.int8:
        return torch.randint(-64, 64, shape, device="cuda", dtype=dtype)
    return torch.randn(shape, device="cuda", dtype=dtype)


def measure_gemm(torch, group: str, dtype: str, backend: str, m: int, n: int, k: int,
                 dense_cache: dict) -> GemmResult:
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}[dtype]
    res = GemmResult(group, dtype, backend, m, n, k, None, None)
    try:
        a = prune_2_4(torch, _rand(torch, (m, k), dt))
        b = _rand(torch, (k, n), dt)
        key = (dtype, m, n, k)
        if key not in dense_cache:
            dense = (lambda: torch._int_mm(a, b)) if dt == torch.int8 else (lambda: torch.mm(a, b))
            dense_cache[key] = time_us(torch, dense)
        res.dense_us, res.dense_runs = dense_cache[key]
        a_sp = to_semi_structured(torch, a, backend)
        res.sparse_us, res.sparse_runs = time_us(torch, lambda: torch.mm(a_sp, b))
    except Exception as e:  # noqa: BLE001 -- an unsupported dtype/backend/shape is a row, not a crash
        res.note = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    finally:
        torch.cuda.empty_cache()
    return res


def measure_compress(torch, dtype: str, backend: str, m: int, k: int) -> list[ExtraResult]:
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    shape = f"{m}x{k}"
    out = []
    try:
        a = _rand(torch, (m, k), dt)
        us, runs = time_us(torch, lambda: prune_2_4(torch, a))
        out.append(ExtraResult("prune", dtype, "torch topk mask", shape, us=us, runs=runs))
        p = prune_2_4(torch, a)
        us, runs = time_us(torch, lambda: to_semi_structured(torch, p, backend))
        out.append(ExtraResult("compress", dtype, backend, shape, us=us, runs=runs))
    except Exception as e:  # noqa: BLE001
        out.append(ExtraResult("compress", dtype, backend, shape, note=f"{type(e).__name__}: {str(e)[:160]}"))
    return out


def measure_mlp(torch, dtype: str, backend: str, d: int, tokens: int) -> ExtraResult:
    """Linear(d, 4d) -> GELU -> Linear(4d, d), forward + backward (input and bias gradients; the 2:4
    weights are frozen, as in 2:4 fine-tuning of a pruned model), dense vs 2:4 weights."""
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    nn = torch.nn
    res = ExtraResult("mlp", dtype, backend, f"d{d} tokens{tokens}")
    try:
        def build(sparse: bool):
            mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)).to("cuda", dt)
            for lin in (mlp[0], mlp[2]):
                w = prune_2_4(torch, lin.weight.detach())
                lin.weight = nn.Parameter(to_semi_structured(torch, w, backend) if sparse else w,
                                          requires_grad=False)
            return mlp
        x = torch.randn(tokens, d, device="cuda", dtype=dt, requires_grad=True)
        g = torch.randn(tokens, d, device="cuda", dtype=dt)
        for sparse in (False, True):
            mlp = build(sparse)
            us, runs = time_us(torch, lambda: mlp(x).backward(g), min_runs=10)
            if sparse:
                res.sparse_us = us
            else:
                res.dense_us, res.runs = us, runs
    except Exception as e:  # noqa: BLE001
        res.note = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_measure.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="GEMM CSV (default accelsim/validation/data/measured_<machine>.csv)")
    p.add_argument("--quick", action="store_true", help="one shape per group, fp16 only (a smoke run)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated, of {', '.join(DTYPES)}")
    a = p.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("gpu_measure: no CUDA device (this script runs on a GPU machine, never in CI)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    env = environment(torch)
    dtypes = ("fp16",) if a.quick else tuple(x for x in a.dtypes.split(",") if x)
    groups = {g: s[:1] if a.quick else s for g, s in SHAPE_GROUPS.items()}
    t0 = time.perf_counter()
    gemms, dense_cache = [], {}
    for group, shapes in groups.items():
        for m, n, k in shapes:
            for dtype in dtypes:
                for backend in BACKENDS:
                    r = measure_gemm(torch, group, dtype, backend, m, n, k, dense_cache)
                    gemms.append(r)
                    print(f"{group} {dtype} {backend} M{m} N{n} K{k}: dense {_fmt(r.dense_us)} us, "
                          f"2:4 {_fmt(r.sparse_us)} us {r.note}", file=sys.stderr, flush=True)
    extras = []
    for dtype in ("fp16", "bf16")[: 1 if a.quick else 2]:
        for backend in BACKENDS:
            for m, k in ((4096, 1024), (4096, 4096), (11008, 4096))[: 1 if a.quick else 3]:
                extras += measure_compress(torch, dtype, backend, m, k)
            for d, tokens in ((1024, 8192), (4096, 8192))[: 1 if a.quick else 2]:
                extras.append(measure_mlp(torch, dtype, backend, d, tokens))
    env.sm_clock_after_mhz = (_smi("clocks.sm") or [""])[0]
    out = a.out or ROOT / "accelsim" / "validation" / "data" / f"measured_{env.machine}.csv"
    source = f"this project (benchmarks/gpu_measure.py, {time.strftime('%Y-%m-%d')})"
    head = (f"dense vs 2:4 GEMMs measured by benchmarks/gpu_measure.py on {env.gpu_name}\n"
            f"{env.conditions}; driver {env.driver}, CUDA {env.cuda}, torch {env.torch}, cuSPARSELt {env.cusparselt}\n"
            "times: median microseconds after warm-up (CUDA events); role alternates per shape")
    write(out, csv_text(gemm_rows(env, gemms, source), GEMM_COLUMNS, head))
    write(out.with_name(out.stem + "_extra.csv"), csv_text(extra_rows(env, extras), EXTRA_COLUMNS, head))
    print(f"wrote {out} ({len(gemms)} GEMM rows) and its _extra.csv ({len(extras)} rows) in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
