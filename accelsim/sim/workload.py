"""Lowering: one traced op of one pass -> C[M,N] += A[M,K] @ B[K,N], repeated `groups` times.

Conventions (the same as SCALE-Sim's training topologies resnet_{fwd,input_grad,weight_grad}.csv,
/work/shared/reference/scalesim/topologies/, so dense MACs equal the forward MACs F in all three
passes, FACTS.md "SWAT ... FLOP accounting"):

| kind/pass     | A (rows M)                      | B (cols N)              | reduction K (order, fastest last) |
|---------------|---------------------------------|-------------------------|-----------------------------------|
| conv fwd      | input windows  M = N*P*Q        | weight  N = K/g         | (r, s, c)  K = R*S*C/g            |
| conv dgrad    | grad_output    M = N*P*Q        | weight^T N = (C/g)*R*S  | k          K = K/g                |
| conv wgrad    | input^T        M = (C/g)*R*S    | grad_output N = K/g     | (n, p, q)  K = N*P*Q              |
| matmul / bmm  | a (M,K)                         | b (K,N)                 | k                                 |

dgrad is the transposed convolution written as a GEMM (dcol = dY * W^T, then col2im scatter-adds
dcol into dX; the scatter is output-side work, not MACs). Padding positions of the input are zeros
inside the fwd/wgrad reductions (counted in dense MACs, never effectual), exactly as im2col does.
The conv reduction order (channels fastest) is also the order in which N:M groups and TensorDash's
16-lane rows are formed (FACTS.md: ASP/SR-STE groups run along C; TensorDash streams channel
first, then x, then y).

Masks stay bit-packed in the trace layout (``packed``); the kernels walk the convolution index space
over them and never build an im2col matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelsim.errors import TraceError, UnsupportedError
from accelsim.trace.format import pack_words, unpack_words

# operand names feeding GEMM A and B per (kind, pass)
GEMM_OPERANDS = {
    ("conv2d", "fwd"): ("input", "weight"),
    ("conv2d", "dgrad"): ("grad_output", "weight"),
    ("conv2d", "wgrad"): ("input", "grad_output"),
}


@dataclass(frozen=True)
class ConvGeometry:
    n: int
    c: int  # all input channels (not per group)
    h: int
    w: int
    k: int  # all filters
    r: int
    s: int
    p: int
    q: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def fwd_macs(self) -> int:
        """F = N*K*(C/g)*R*S*P*Q (FACTS.md, SWAT FLOP accounting)."""
        return self.n * self.k * (self.c // self.groups) * self.r * self.s * self.p * self.q

    def describe(self) -> str:
        st = self.stride[0] if self.stride[0] == self.stride[1] else f"{self.stride[0]}x{self.stride[1]}"
        g = f" g{self.groups}" if self.groups > 1 else ""
        return f"N{self.n} C{self.c} H{self.h} W{self.w} K{self.k} R{self.r} S{self.s} /{st}{g}"


@dataclass(frozen=True)
class OpStub:
    """A stand-in for trace.format.OpRecord for hand-made workloads (tests, benchmarks)."""

    id: int = 0
    step: int = 0
    seq: int = 0
    pass_: str = "fwd"
    kind: str = "matmul"
    layer: str = ""
    module_type: str = ""
    aten: str = ""
    operands: tuple = ()
    out_shape: tuple = ()
    params: dict = field(default_factory=dict)


@dataclass
class Workload:
    """One op of one pass, lowered to C[M,N] += A[M,K] @ B[K,N], repeated `groups` times."""

    op: Any
    m: int
    n: int
    k: int
    groups: int  # dense_macs = groups*m*n*k
    a: str
    b: str
    conv: ConvGeometry | None
    packed: dict[str, np.ndarray]  # uint64 words, bit i of the C-order flattening of the stored tensor
    nnz: dict[str, int]
    shapes: dict[str, tuple] = field(default_factory=dict)  # stored (trace-layout) shape per operand
    transposed: dict[str, bool] = field(default_factory=dict)  # stored tensor's last two dims swapped
    roles: dict[str, str] = field(default_factory=dict)  # trace TensorRecord.role per operand
    _bits: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def dense_macs(self) -> int:
        return self.groups * self.m * self.n * self.k

    @property
    def output_numel(self) -> int:
        """Elements of the op's real output tensor. For conv dgrad that is dX (N*C*H*W): the col2im
        scatter-add of the M x N product happens on chip, so only dX leaves the array."""
        if self.conv is not None and self.op.pass_ == "dgrad":
            g = self.conv
            return g.n * g.c * g.h * g.w
        return self.groups * self.m * self.n

    @property
    def pass_(self) -> str:
        return self.op.pass_

    @property
    def kind(self) -> str:
        return self.op.kind

    def numel(self, name: str) -> int:
        return int(math.prod(self.shapes[name]))

    def read_numel(self, name: str) -> int:
        """Distinct elements of operand `name` the lowered GEMM reads: min(stored tensor, GEMM
        operand). A conv with stride > kernel (ResNet's 1x1 stride-2 downsample) reads a quarter of
        its input; a 3x3 window matrix repeats input elements 9x but each is fetched once. The GPU
        model's _unique_scale is the same bound as a ratio."""
        gemm = self.groups * self.k * (self.m if name == self.a else self.n)
        return min(self.numel(name), gemm)

    def density(self, name: str) -> float:
        n = self.numel(name)
        return self.nnz[name] / n if n else 0.0

    def mask(self, name: str) -> np.ndarray:
        """Bool mask in the stored (trace) layout, unpacked once and cached (numpy, little bit order)."""
        if name not in self._bits:
            self._bits[name] = unpack_words(self.packed[name], tuple(self.shapes[name]))
        return self._bits[name]

    def used_mask(self, name: str) -> np.ndarray:
        """Bool mask as the op used it (transposed operands get their last two dims swapped)."""
        m = self.mask(name)
        return np.swapaxes(m, -1, -2) if self.transposed.get(name) else m

    def role_of(self, name: str) -> str:
        """'weight' or 'activation' (anything that is not a weight: activations, gradients)."""
        role = self.roles.get(name)
        if role is None:
            role = "weight" if name == "weight" else "activation"
        return "weight" if role == "weight" else "activation"

    def shape_str(self) -> str:
        if self.conv is not None:
            return self.conv.describe()
        b = f"B{self.groups} " if self.groups > 1 else ""
        return f"{b}M{self.m} N{self.n} K{self.k}"


from accelsim.sim.policy import FamilyCost  # noqa: E402,F401  (family-shared policy lives in sim/policy.py)


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """Bool array -> uint64 words, bit i of the C-order flattening = (w[i>>6] >> (i&63)) & 1
    (the trace's layout: accelsim.trace.format.pack_words)."""
    return pack_words(mask)


def _pair(v, key: str, where: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise TraceError(f"{where}: conv2d param {key} must be two integers, got {v!r}")


def conv_geometry(params: dict, where: str = "op") -> ConvGeometry:
    """Geometry of the forward convolution from conv2d params (input/weight/output shapes)."""
    try:
        n, c, h, w = (int(x) for x in params["input_shape"])
        k, cg, r, s = (int(x) for x in params["weight_shape"])
        n2, k2, p, q = (int(x) for x in params["output_shape"])
    except (KeyError, TypeError, ValueError):
        raise TraceError(f"{where}: conv2d params need 4-d input_shape, weight_shape, output_shape") from None
    g = params.get("groups", 1)
    if not isinstance(g, int) or g < 1 or c % g or k % g or cg != c // g or n2 != n or k2 != k:
        raise TraceError(f"{where}: inconsistent conv2d shapes input {params['input_shape']} weight "
                         f"{params['weight_shape']} output {params['output_shape']} groups {g}")
    geo = ConvGeometry(n=n, c=c, h=h, w=w, k=k, r=r, s=s, p=p, q=q,
                       stride=_pair(params.get("stride", 1), "stride", where),
                       padding=_pair(params.get("padding", 0), "padding", where),
                       dilation=_pair(params.get("dilation", 1), "dilation", where), groups=g)
    # P = floor((H + 2pad - dil*(R-1) - 1)/stride) + 1 (PyTorch Conv2d docs)
    for ax, (size, kern, out) in enumerate(((h, r, p), (w, s, q))):
        exp = (size + 2 * geo.padding[ax] - geo.dilation[ax] * (kern - 1) - 1) // geo.stride[ax] + 1
        if exp != out or min(geo.stride[ax], geo.dilation[ax]) < 1 or geo.padding[ax] < 0:
            raise TraceError(f"{where}: conv2d output size {out} does not follow from input {size}, "
                             f"kernel {kern}, stride {geo.stride[ax]}, padding {geo.padding[ax]}, "
                             f"dilation {geo.dilation[ax]}")
    return geo


def gemm_dims(kind: str, pass_: str, geo: ConvGeometry | None,
              shapes_used: dict[str, tuple]) -> tuple[int, int, int, int, str, str]:
    """(M, N, K, groups, a, b) of the lowered GEMM (table in the module docstring)."""
    if kind == "conv2d":
        g = geo.groups
        cg, kg = geo.c // g, geo.k // g
        if pass_ == "fwd":
            return geo.n * geo.p * geo.q, kg, geo.r * geo.s * cg, g, "input", "weight"
        if pass_ == "dgrad":
            return geo.n * geo.p * geo.q, cg * geo.r * geo.s, kg, g, "grad_output", "weight"
        if pass_ == "wgrad":
            return cg * geo.r * geo.s, kg, geo.n * geo.p * geo.q, g, "input", "grad_output"
        raise UnsupportedError(f"conv2d pass {pass_!r} is not one of fwd, dgrad, wgrad")
    if kind == "matmul":
        (m, k), (k2, n) = shapes_used["a"], shapes_used["b"]
        if k != k2:
            raise TraceError(f"matmul operand shapes {shapes_used['a']} x {shapes_used['b']} do not chain")
        return m, n, k, 1, "a", "b"
    if kind == "bmm":
        (bt, m, k), (bt2, k2, n) = shapes_used["a"], shapes_used["b"]
        if k != k2 or bt != bt2:
            raise TraceError(f"bmm operand shapes {shapes_used['a']} x {shapes_used['b']} do not chain")
        return m, n, k, bt, "a", "b"
    raise UnsupportedError(f"op kind {kind!r} has no lowering (supported: conv2d, matmul, bmm)")


def _used(shape: tuple, transposed: bool) -> tuple:
    return tuple(shape[:-2]) + (shape[-1], shape[-2]) if transposed else tuple(shape)


def _check_conv_shapes(geo: ConvGeometry, pass_: str, shapes_used: dict, where: str) -> None:
    want = {"input": (geo.n, geo.c, geo.h, geo.w), "weight": (geo.k, geo.c // geo.groups, geo.r, geo.s),
            "grad_output": (geo.n, geo.k, geo.p, geo.q)}
    for name, shp in shapes_used.items():
        if name in want and tuple(shp) != want[name]:
            raise TraceError(f"{where}: conv2d {pass_} operand {name} has shape {tuple(shp)}, "
                             f"params say {want[name]}")


def build_workload(op, packed: dict, nnz: dict, shapes: dict, transposed: dict | None = None,
                   roles: dict | None = None) -> Workload:
    """Lower an op given its operands' packed masks and stored shapes (used by lower() and tests)."""
    transposed = dict(transposed or {})
    where = f"op {op.id} ({op.layer or op.kind} {op.pass_})"
    if op.kind not in ("conv2d", "matmul", "bmm"):
        raise UnsupportedError(f"{where}: op kind {op.kind!r} has no lowering (supported: conv2d, matmul, bmm)")
    used = {nm: _used(tuple(shp), transposed.get(nm, False)) for nm, shp in shapes.items()}
    geo = None
    if op.kind == "conv2d":
        geo = conv_geometry(op.params, where)
        if op.pass_ not in ("fwd", "dgrad", "wgrad"):
            raise UnsupportedError(f"{where}: conv2d pass {op.pass_!r} is not one of fwd, dgrad, wgrad")
        need = GEMM_OPERANDS[("conv2d", op.pass_)]
        for nm in need:
            if nm not in shapes:
                raise TraceError(f"{where}: conv2d {op.pass_} needs operand {nm!r}, has {sorted(shapes)}")
            if transposed.get(nm):
                raise UnsupportedError(f"{where}: transposed conv operand {nm!r} is not supported")
        _check_conv_shapes(geo, op.pass_, used, where)
    else:
        for nm in ("a", "b"):
            if nm not in shapes:
                raise TraceError(f"{where}: {op.kind} needs operands a and b, has {sorted(shapes)}")
            if len(used[nm]) != (2 if op.kind == "matmul" else 3):
                raise TraceError(f"{where}: {op.kind} operand {nm} has shape {used[nm]}")
    m, n, k, g, a, b = gemm_dims(op.kind, op.pass_, geo, used)
    return Workload(op=op, m=m, n=n, k=k, groups=g, a=a, b=b, conv=geo,
                    packed={nm: packed[nm] for nm in (a, b)}, nnz={nm: int(nnz[nm]) for nm in (a, b)},
                    shapes={nm: tuple(shapes[nm]) for nm in (a, b)},
                    transposed={nm: bool(transposed.get(nm, False)) for nm in (a, b)},
                    roles=dict(roles or {}))


def lower(trace, op) -> Workload:
    """Lower one trace op (trace.format.OpRecord) using the trace's packed masks."""
    packed, nnz, shapes, transposed, roles = {}, {}, {}, {}, {}
    for operand in op.operands:
        rec = trace.tensors[operand.tensor]
        packed[operand.name] = trace.packed(operand.tensor)
        nnz[operand.name] = rec.nnz
        shapes[operand.name] = tuple(rec.shape)
        transposed[operand.name] = bool(operand.transposed)
        roles[operand.name] = rec.role
    return build_workload(op, packed, nnz, shapes, transposed, roles)


def workload_from_masks(kind: str, pass_: str, masks: dict[str, np.ndarray], params: dict | None = None,
                        *, op_id: int = 0, layer: str = "", transposed: dict | None = None,
                        roles: dict | None = None) -> Workload:
    """A Workload from bool masks in the stored layout (tests, synthetic benchmarks)."""
    op = OpStub(id=op_id, pass_=pass_, kind=kind, layer=layer, params=dict(params or {}))
    packed = {nm: pack_mask(mk) for nm, mk in masks.items()}
    nnz = {nm: int(np.count_nonzero(mk)) for nm, mk in masks.items()}
    shapes = {nm: tuple(mk.shape) for nm, mk in masks.items()}
    return build_workload(op, packed, nnz, shapes, transposed, roles)


def conv_params(n, c, h, w, k, r, s, *, stride=1, padding=0, dilation=1, groups=1) -> dict:
    """conv2d params (as the recorder writes them) for a forward conv of the given geometry."""
    st, pd, dl = (_pair(x, nm, "conv_params") for x, nm in ((stride, "stride"), (padding, "padding"),
                                                             (dilation, "dilation")))
    p = (h + 2 * pd[0] - dl[0] * (r - 1) - 1) // st[0] + 1
    q = (w + 2 * pd[1] - dl[1] * (s - 1) - 1) // st[1] + 1
    return {"stride": list(st), "padding": list(pd), "dilation": list(dl), "groups": groups,
            "input_shape": [n, c, h, w], "weight_shape": [k, c // groups, r, s], "output_shape": [n, k, p, q]}


def resolve_operand(work: Workload, spec: str) -> tuple[str | None, str | None]:
    """Which GEMM side ('a' or 'b') a hardware sparsity `operand` spec names for this op.

    Returns (side, None) or (None, reason). "weight"/"activation" use the trace tensor roles (any
    non-weight tensor -- activation or gradient -- counts as an activation); "a"/"b" name the GEMM
    side directly. "auto" and "both" are resolved by the family models."""
    if spec in ("a", "b"):
        return spec, None
    if spec in ("weight", "activation"):
        sides = [s for s, nm in (("a", work.a), ("b", work.b)) if work.role_of(nm) == spec]
        if not sides:
            return None, f"no {spec} operand in {work.kind} {work.pass_} ({work.a} x {work.b})"
        return sides[-1] if spec == "weight" else sides[0], None
    raise ValueError(f"operand spec {spec!r} is resolved by the family model")


# The reduction dim of each pass (lowering above), named for users in N:M fallback reasons.
_REDUCTION_DIM = {("conv2d", "fwd"): "C (with R, S)", ("conv2d", "dgrad"): "K (output channels)",
                  ("conv2d", "wgrad"): "N*P*Q (batch and output pixels)"}


def nm_reason(name: str, kind: str, pass_: str, n: int, m: int, compliance: float) -> str:
    """Why an operand whose kernels.nm_compliance is below 1 cannot take the N:M rate: one wording
    for every family (GPU mma.sp, systolic N:M PEs)."""
    dim = _REDUCTION_DIM.get((kind, pass_), "K")
    pct = 100.0 * (1.0 - compliance)
    why = (f"{name} not {n}:{m} along {dim}, the {pass_} reduction dim: {pct:.3g}% of groups of {m} "
           f"have >{n} non-zeros")
    if kind == "conv2d" and pass_ == "dgrad" and name == "weight":
        why += " (a fwd N:M weight mask runs along C, dgrad reduces over K)"
    return why
