"""Declaration of the gpu family (A100-style tensor cores; cost model: accelsim/sim/gpu.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelsim.errors import HardwareConfigError
from accelsim.hw import units
from accelsim.hw.family import DRAM, Family, Role, data_type, register


@dataclass(frozen=True)
class GpuCompute:
    sms: int
    tensor_cores_per_sm: int
    dense_macs_per_cycle_per_core: int
    mma_shape: tuple[int, int, int]
    sparse_mma_shape: tuple[int, int, int]
    data_type: str
    element_bytes: int
    # M, N, K of a thread block; several = the library's candidates, the fastest is used per GEMM
    cta_tiles: tuple[tuple[int, int, int], ...]
    ctas_per_sm: int
    launch_overhead_s: float
    # issue 11: "ideal" = the silicon's bound (kernels as efficient as the MMA rate allows);
    # "library" = what measured libraries reach: main-loop cycles / efficiency and a fixed time per
    # kernel, dense and 2:4 separately (accelsim/sim/gpu.py "Kernel model")
    kernel_model: str = "ideal"
    mainloop_efficiency: tuple[float, float] = (1.0, 1.0)  # (dense, sparse), in (0, 1]
    kernel_fixed_s: tuple[float, float] = (0.0, 0.0)  # (dense, sparse) seconds per GEMM kernel
    cta_fixed_s: tuple[float, float] = (0.0, 0.0)  # (dense, sparse) seconds per CTA, serial on its SM
    # library model only: the 2:4 library's own kernels -- its CTA tiles (empty = cta_tiles) and
    # whether it splits K (cuSPARSELt's default algorithm, no autotuning search: one kernel, no
    # split-K; accelsim/sim/gpu.py "Kernel model")
    sparse_cta_tiles: tuple[tuple[int, int, int], ...] = ()
    sparse_split_k: bool = True
    # compute.dtypes: the data types the tensor cores run besides data_type, as (dtype, MMA rate
    # multiple of data_type's) pairs from the datasheet (with_dtype derives the variant); () = only
    # data_type
    dtype_rates: tuple[tuple[str, int], ...] = ()

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.sms * self.tensor_cores_per_sm * self.dense_macs_per_cycle_per_core

    @property
    def sparse_rate_factor(self) -> int:
        """How many times more MACs mma.sp issues than the dense mma in the same time (A100:
        m16n8k32 vs m16n8k16 -> 2); validate() makes sure it is a whole number >= 1."""
        dm, dn, dk = self.mma_shape
        sm, sn, sk = self.sparse_mma_shape
        return (sm * sn * sk) // (dm * dn * dk)


REQUIRED = ("sms", "tensor_cores_per_sm", "dense_macs_per_cycle_per_core", "mma_shape", "sparse_mma_shape",
            "data_type", "cta_tile", "launch_overhead")


KERNEL_MODELS = ("ideal", "library")
DTYPE_ALIASES = {"bfloat16": "bf16"}


def _dtype_rates(ctx, c, base: str) -> tuple[tuple[str, int], ...]:
    """compute.dtypes: {dtype: whole rate multiple >= 1 of data_type's MMA rate}; data_type itself, when
    listed, at 1."""
    from accelsim.hw.config import DATA_TYPES
    if "dtypes" not in c:
        return ()
    v = c["dtypes"]
    if not isinstance(v, dict) or not v:
        raise ctx.fail("compute.dtypes", f"must be a mapping {{dtype: rate multiple}}, got {str(v)[:40]!r}")
    out = []
    for name, rate in v.items():
        where = f"compute.dtypes.{str(name)[:20]}"
        if name not in DATA_TYPES:
            raise ctx.fail(where, f"unknown data type (valid: {', '.join(DATA_TYPES)})")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
            raise ctx.fail(where, f"must be a whole number >= 1 (MMA rate multiple of {base}), got {str(rate)[:40]!r}")
        dt = DTYPE_ALIASES.get(name, name)
        if dt == DTYPE_ALIASES.get(base, base) and rate != 1:
            raise ctx.fail(where, f"is the file's data_type: its rate multiple is 1, got {rate}")
        out.append((dt, rate))
    return tuple(out)


def supported_dtypes(hw) -> tuple[str, ...]:
    """The data types with_dtype accepts for a gpu config: data_type first, then compute.dtypes."""
    base = DTYPE_ALIASES.get(hw.compute.data_type, hw.compute.data_type)
    return (base,) + tuple(d for d, _ in hw.compute.dtype_rates if d != base)


def with_dtype(hw, dtype: str):
    """``hw`` (a gpu config) running its tensor cores in ``dtype``: ``hw`` itself for its data_type;
    for a dtype of compute.dtypes at rate multiple r, dense_macs_per_cycle_per_core x r and both MMA
    shapes' K x r (same M, N, issue rate: A100 s8 mma m16n8k32 / mma.sp m16n8k64 against f16's
    k16 / k32, docs/sources.md "NVIDIA A100"), element_bytes the dtype's width, and every CTA tile's K
    scaled by the width ratio so a tile holds the same bytes (CUTLASS's INT8 tiles double the fp16
    K). The rates are the datasheets' (docs/sources.md "NVIDIA A100": INT8 624 dense TOPS = 2x FP16;
    "NVIDIA Hopper": FP8 1978.9 = 2x FP16/BF16). The kernel-model parameters stay the file's (fitted
    on its data_type). A dtype not in the file: HardwareConfigError naming the supported ones."""
    from accelsim.hw.config import DATA_TYPES
    g = hw.compute
    want = DTYPE_ALIASES.get(dtype, dtype)
    base = DTYPE_ALIASES.get(g.data_type, g.data_type)
    if want == base:
        return hw
    rate = dict(g.dtype_rates).get(want)
    if rate is None:
        raise HardwareConfigError(f"{hw.name[:40]} has no {str(dtype)[:20]} tensor-core rate (supported: "
                                  f"{', '.join(supported_dtypes(hw))}; compute.dtypes in its file)")
    eb = DATA_TYPES[want]
    if g.element_bytes % eb:
        raise HardwareConfigError(f"{hw.name[:40]}: {want} ({eb} bytes) is wider than {base} "
                                  f"({g.element_bytes} bytes); only narrower types derive a variant")
    kx = g.element_bytes // eb
    dm, dn, dk = g.mma_shape
    sm, sn, sk = g.sparse_mma_shape
    c = dataclasses.replace(g, data_type=want, element_bytes=eb,
                            dense_macs_per_cycle_per_core=rate * g.dense_macs_per_cycle_per_core,
                            mma_shape=(dm, dn, rate * dk), sparse_mma_shape=(sm, sn, rate * sk),
                            cta_tiles=tuple((tm, tn, kx * tk) for tm, tn, tk in g.cta_tiles),
                            sparse_cta_tiles=tuple((tm, tn, kx * tk) for tm, tn, tk in g.sparse_cta_tiles))
    out = dataclasses.replace(hw, name=f"{hw.name} ({want} variant)", compute=c)
    # the variant meets the load-time checks too (tiles a multiple of the MMA shapes, smem)
    return validate(out, lambda where, msg: HardwareConfigError(f"{out.name[:60]}: {where}: {msg}"))
LIBRARY_KEYS = ("mainloop_efficiency", "kernel_fixed", "cta_fixed", "sparse_cta_tile", "sparse_split_k")


def _dense_sparse(ctx, c, key: str, parse, default: tuple[float, float]) -> tuple[float, float]:
    """A {dense: x, sparse: y} mapping (both required) through ``parse``, or ``default`` when absent."""
    if key not in c:
        return default
    v = c[key]
    ctx.keys(v, f"compute.{key}", ("dense", "sparse"), ("dense", "sparse"))
    return parse(v["dense"], f"compute.{key}.dense"), parse(v["sparse"], f"compute.{key}.sparse")


def _efficiency(ctx):
    def parse(v, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < float(v) <= 1:
            raise ctx.fail(where, f"must be a number in (0, 1], got {str(v)[:40]!r}")
        return float(v)
    return parse


def _time(ctx):
    def parse(v, where):
        t = ctx.unit(units.parse_time, v, where)
        if t < 0:
            raise ctx.fail(where, f"must be >= 0, got {t}")
        return t
    return parse


MODEL_LABELS = {"ideal": "ideal-kernel bound: what the silicon allows",
                "library": "library-realistic kernels, fitted to measured libraries"}


def kernel_model_of(hw) -> str | None:
    """"ideal" or "library" for a gpu config (compute.kernel_model), None for other families: which of
    the two a GPU number is (run's hw line, run/gemm JSON, gemm's header)."""
    return getattr(hw.compute, "kernel_model", None) if hw.family == "gpu" else None


def parse_compute(ctx, c) -> GpuCompute:
    ctx.keys(c, "compute", FAMILY.compute_keys, REQUIRED)
    dt, eb = data_type(ctx, c)
    launch = ctx.unit(units.parse_time, c["launch_overhead"], "compute.launch_overhead")
    if launch < 0:
        raise ctx.fail("compute.launch_overhead", f"must be >= 0, got {launch}")
    model = ctx.choice(c, "kernel_model", "compute", KERNEL_MODELS, default="ideal")
    if model == "ideal":
        for key in LIBRARY_KEYS:
            if key in c:
                raise ctx.fail(f"compute.{key}", "only with kernel_model: library (the ideal model has none)")
    eff = _dense_sparse(ctx, c, "mainloop_efficiency", _efficiency(ctx), (1.0, 1.0))
    fixed = _dense_sparse(ctx, c, "kernel_fixed", _time(ctx), (0.0, 0.0))
    cta_fixed = _dense_sparse(ctx, c, "cta_fixed", _time(ctx), (0.0, 0.0))
    sparse_tiles = ctx.triples(c, "sparse_cta_tile", "compute") if "sparse_cta_tile" in c else ()
    split = c.get("sparse_split_k", True)
    if not isinstance(split, bool):
        raise ctx.fail("compute.sparse_split_k", f"must be true or false, got {str(split)[:40]!r}")
    return GpuCompute(sms=ctx.int_(c, "sms", "compute"),
                      tensor_cores_per_sm=ctx.int_(c, "tensor_cores_per_sm", "compute"),
                      dense_macs_per_cycle_per_core=ctx.int_(c, "dense_macs_per_cycle_per_core", "compute"),
                      mma_shape=ctx.triple(c, "mma_shape", "compute"),
                      sparse_mma_shape=ctx.triple(c, "sparse_mma_shape", "compute"),
                      data_type=dt, element_bytes=eb, cta_tiles=ctx.triples(c, "cta_tile", "compute"),
                      ctas_per_sm=ctx.int_(c, "ctas_per_sm", "compute", default=1),
                      launch_overhead_s=launch, kernel_model=model, mainloop_efficiency=eff,
                      kernel_fixed_s=fixed, cta_fixed_s=cta_fixed, sparse_cta_tiles=sparse_tiles,
                      sparse_split_k=split, dtype_rates=_dtype_rates(ctx, c, dt))


def validate(hw, fail):
    """The facts the cost model relies on (all checked here, at load, not inside op_cost): mma.sp
    holds a whole multiple of the dense mma's MACs; every CTA tile is a multiple of both MMA shapes;
    two pipeline stages of A and B slices of every resident CTA fit shared memory (smem)."""
    gpu = hw.compute
    dm, dn, dk = gpu.mma_shape
    sm, sn, sk = gpu.sparse_mma_shape
    if (sm * sn * sk) % (dm * dn * dk) or sm * sn * sk < dm * dn * dk:
        raise fail("compute.sparse_mma_shape", f"{list(gpu.sparse_mma_shape)} does not hold a whole multiple "
                                               f"of the MACs of mma_shape {list(gpu.mma_shape)}")
    smem = hw.role("smem")
    for tile in gpu.cta_tiles + gpu.sparse_cta_tiles:
        tm, tn, tk = tile
        for label, shape in (("mma_shape", gpu.mma_shape), ("sparse_mma_shape", gpu.sparse_mma_shape)):
            if tm % shape[0] or tn % shape[1] or tk % shape[2]:
                raise fail("compute.cta_tile", f"{list(tile)} is not a multiple of {label} {list(shape)}")
        # two pipeline stages of the A and B slices per resident CTA (double-buffered main loop)
        need = 2 * (tm * tk + tk * tn) * gpu.element_bytes * gpu.ctas_per_sm
        if need > smem.capacity_bytes:
            raise fail("compute.cta_tile", f"{gpu.ctas_per_sm} CTAs of {list(tile)} need {need} bytes of "
                                           f"{smem.name} per SM (two stages of A and B slices), it holds "
                                           f"{smem.capacity_bytes}")
    return hw


FAMILY = register(Family(
    name="gpu",
    compute_keys=("sms", "tensor_cores_per_sm", "dense_macs_per_cycle_per_core", "mma_shape",
                  "sparse_mma_shape", "data_type", "element_bytes", "cta_tile", "ctas_per_sm",
                  "launch_overhead", "kernel_model", "mainloop_efficiency", "kernel_fixed", "cta_fixed", "sparse_cta_tile",
                  "sparse_split_k", "dtypes"),
    parse_compute=parse_compute,
    sparsity_kinds=("none", "nm"),
    roles=(Role("smem", "shared memory, per SM", shared=False),
           Role("l2", "L2 cache, shared by all SMs", shared=True),
           Role(DRAM, "HBM / off-chip memory", on_chip=False)),
    cost_module="accelsim.sim.gpu",
    validate=validate,
))
