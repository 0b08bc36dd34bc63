"""Record what a PyTorch training step really computes: every op of forward, backward and the
optimizer step (trace format v2): convs, matmuls and attention as GEMMs with operand masks, the
rest as memory-bound vector records (docs/trace-format.md "Vector ops", "Attention").

Usage (three lines in a user's own loop)::

    with accelsim.record(model, "run.npz", steps=range(100, 103), method="swat") as rec:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
            rec.step()

How it works. A ``TorchDispatchMode`` (the mechanism behind ``torch.utils.flop_counter``) sees every
aten op below autograd, whoever issued it: a module, a functional call, or a custom
``autograd.Function`` such as SWAT's sparse backward (``torch.nn.grad.conv2d_input`` is an
``aten.convolution_backward`` with ``output_mask=(True, False, False)``). Handlers for
``convolution``, ``convolution_backward``, ``mm``, ``addmm``, ``bmm`` and ``baddbmm`` write op records whose
operand masks are ``tensor != 0`` of the very tensors passed to the op. ``saved_tensors_hooks``
record every tensor autograd keeps for backward. Forward ops take their layer from a stack of
module forward hooks; backward ops from the autograd node running them: the node unpacks the
tensors it saved in forward, and each saved record knows its layer. Nothing is installed outside
the listed steps, so unrecorded steps run at full speed.

Pass of a backward matmul (autograd gives no label): for C = A @ B in forward, the backward op
that consumes B computes dA, the one that consumes A computes dB (matched by data address and size
against the forward operands of the same layer, and only if held by the very same still-alive
storage, which is exact for standard autograd); failing that (e.g. SWAT saves a sparse copy of
A), an op consuming a saved *activation* is the weight gradient and one consuming a saved *weight*
the input gradient; failing that, the output shape decides (a warning goes into the header's meta
if nothing does). The gradient of the
weight operand is ``wgrad``, the other ``dgrad``; with no weight (attention's Q @ K^T) the gradient
of ``a`` is ``dgrad`` and of ``b`` ``wgrad``. A weight is a parameter, a view of one, or a same-size
tensor computed from one during the step's forward (SWAT's ``W~ = W * mask``), tracked through the
dispatch mode.

Layers: a forward op is named after the innermost module running it, except that an op using a
parameter of a submodule, or one of several named weights of the module itself, is named after
that weight (``nn.MultiheadAttention`` calls its projections functionally: ``attn.in_proj``,
``attn.out_proj``); a backward node takes the layer of the weights it unpacks. A saved
``torch.nn.utils.prune`` mask (``weight_orig * weight_mask``) is weight-side.

Forward passes: conv/matmul ops run while the model was entered under ``torch.no_grad()`` (an eval
pass inside the block) are not part of the training step: they are not recorded, but counted with
their MACs in ``meta["no_grad_forward"]``, and a warning says so. More training forward passes than
recorded steps (a loop that forgot ``rec.step()``) is warned about once.

Determinism: the same seeded run gives the same tables bit for bit. Every cache is keyed on an
address but trusted only for a tensor held by the entry's own live storage with its memory unmoved
(:class:`_Owner`), never on when Python happens to free a wrapper; ids, roles and storage numbers
follow the program order of ops alone.

Format v2: scaled-dot-product attention (every fused backend) becomes its bmm GEMMs with
``params.attention``; conv1d is recorded as the conv2d of height 1 it equals, 3-d and transposed
convolutions as the matmuls of their unfolded windows; every other op that
moves data is a vector record (views and metadata ops are free and only counted); the sparsity
method's own work is marked through accelsim.sparsity.handle (``sparsify_work`` around torch ops,
``note_hidden_work`` for work done in numpy or skipped here); ops re-run by activation
checkpointing carry ``params.recompute``; ``meta["coverage"]`` counts every aten op seen and recorded.

Limits: ops inside ``torch.compile``d regions are not guaranteed to be seen, and tensors saved
under the user's own ``saved_tensors_hooks`` (e.g. non-reentrant activation checkpointing) are not
seen, so backward ops there may be tied to the enclosing module (a recorder warning says so);
grouped transposed / 3-d convolutions (or ones whose unfolded operand is too large) are counted in
``meta["unrecorded_ops"]`` (and as not recorded in the coverage); matrix-vector products are
recorded as vector work.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from accelsim.errors import AccelsimError
from accelsim.sparsity import handle as sparsity_handle
from accelsim.trace.format import Operand, TraceWriter, _popcount
from accelsim.util.atomic import deferred_signals

__all__ = ["record", "Recorder"]

aten = torch.ops.aten


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _canon(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A transposed view (non-contiguous, contiguous once its last two dims swap) -> (untransposed, True)."""
    if t.dim() >= 2 and not t.is_contiguous() and t.mT.is_contiguous():
        return t.mT, True
    return t, False


def _key(t: torch.Tensor) -> tuple:
    """Where the data a tensor covers lies (first element's address + size): the same for its views,
    reshapes and transposes, so a backward op that uses ``W.t()`` or ``x.reshape(-1, c)`` matches
    the forward use of W or x. An address is not an identity: every lookup by key also checks
    that the tensor found is held by the entry's own live storage (:class:`_Owner`)."""
    return (t.data_ptr(), t.numel())


class _Owner:
    """The storage that held a tensor's memory when an entry was made (weakly) and where that memory
    was. An address-keyed entry is valid only for a tensor whose storage *is* that storage (same
    ``StorageImpl``, ``_cdata``) and still holds that memory. Trusting a bare address is wrong
    twice over: once the owner dies, malloc hands the address to the next tensor of that size (a
    Q @ K^T gradient got the id and role of the freed softmax output, in some runs and not others,
    depending on when Python freed wrappers); and a live storage can give its memory back in place
    (``untyped_storage().resize_(0)``, as FSDP does with parameters). The weak reference is to the
    storage's Python object, which torch keeps for as long as the C++ storage lives (any view,
    detached alias or autograd's saved copy), and which never keeps the memory alive itself."""

    __slots__ = ("ref", "cdata", "ptr")

    def __init__(self, t: torch.Tensor):
        st = t.untyped_storage()
        self.ref, self.cdata, self.ptr = weakref.ref(st), st._cdata, st.data_ptr()

    def holds(self, t: torch.Tensor) -> bool:
        st = self.ref()  # alive -> its _cdata is unique among live storages, so equal means the same
        return st is not None and st.data_ptr() == self.ptr and t.untyped_storage()._cdata == self.cdata


# Float dtypes numpy cannot hold: compare their bit patterns with the sign bit masked off instead
# (an IEEE-style float is zero iff every bit but the sign is zero; NaN counts as non-zero).
_BITS_VIEW = {torch.bfloat16: (torch.int16, 0x7FFF)}
for _name in ("float8_e4m3fn", "float8_e5m2"):  # (the *fnuz formats use 0x80 for NaN: left to torch)
    if hasattr(torch, _name):
        _BITS_VIEW[getattr(torch, _name)] = (torch.uint8, 0x7F)


def _nonzero_np(t: torch.Tensor) -> np.ndarray:
    """Boolean numpy array ``t != 0`` (same shape), compared by numpy: torch's ``ne`` into a bool
    tensor measured 13 ms vs numpy's 0.8 ms for a 32x64x32x32 float32 activation on the 2-core
    development machine, and the mask is the recorder's main cost (benchmarks/bench_record.py).
    The zero-copy view is taken through DLPack, not ``Tensor.numpy()``: the latter marks the user's
    storage non-resizable for good, so recording would break code that frees memory in place
    (``untyped_storage().resize_(0)``, as FSDP does); DLPack leaves the storage as it was."""
    t = t.detach()
    if t.device.type != "cpu":  # compare on the device, move 1 byte per element
        return t.ne(0).cpu().numpy()
    view = _BITS_VIEW.get(t.dtype)
    try:
        if view is not None:
            return (np.from_dlpack(t.view(view[0])) & view[1]) != 0
        return np.from_dlpack(t.resolve_conj().resolve_neg()) != 0
    except (TypeError, RuntimeError, BufferError):  # a dtype numpy has no view of: let torch compare
        return t.ne(0).numpy()  # (a new tensor of ours: marking it non-resizable harms no one)


def _pack_mask(t: torch.Tensor) -> tuple[np.ndarray, int]:
    packed = np.packbits(_nonzero_np(t), axis=None, bitorder="little")  # C-order flattening
    return packed, _popcount(packed)


@dataclass
class _Entry:  # mask cache entry: valid for tensors held by the same live storage (see _Owner)
    owner: _Owner
    packed: np.ndarray
    nnz: int
    tids: dict = field(default_factory=dict)  # (role, stored shape) -> tensor id


@dataclass
class _FwdMM:  # what a forward matmul used, to classify its backward ops
    kind: str
    ka: tuple
    kb: tuple
    sa: tuple
    sb: tuple
    weight: str | None  # "a" | "b" | None
    oa: _Owner
    ob: _Owner
    mtype: str = ""

    def uses(self, which: str, ops: tuple) -> bool:
        """Is forward operand ``which`` one of ``ops`` ((key, tensor) pairs)? A freed forward
        tensor's address may now hold a gradient: only the same live storage matches."""
        k, o = (self.ka, self.oa) if which == "a" else (self.kb, self.ob)
        return any(k == kk and o.holds(t) for kk, t in ops)


@dataclass
class _Node:  # a backward autograd node: its layer (from what it unpacked) and its saved tensors
    layer: str
    module_type: str
    saved: dict = field(default_factory=dict)  # key -> (category, _Owner)
    recs: list = field(default_factory=list)   # the saved records it unpacked

    def rename(self, layer: str, module_type: str) -> None:
        """Tie the node (and the records it unpacked that were named after the old layer) to a
        sublayer; a saved tensor belongs to exactly one node, so this names that tensor's user."""
        for r in self.recs:
            if r["layer"] == self.layer:
                r["layer"] = layer
        self.layer, self.module_type = layer, module_type

    def category(self, k: tuple, t: torch.Tensor) -> str | None:
        hit = self.saved.get(k)
        return hit[0] if hit is not None and hit[1].holds(t) else None


# Compute ops the simulator has no op kind for: counted so that the trace says what it misses.
_UNMODELED = {getattr(getattr(aten, n), "default", None) for n in (
    "addmv", "mv", "dot", "vdot", "addbmm", "addr", "outer", "_convolution", "mkldnn_convolution", "conv_depthwise2d",
    "_convolution_double_backward", "_embedding_bag") if hasattr(aten, n)} - {None}


# ---------------------------------------------------------------- vector (non-GEMM) ops, trace v2
# Ops that move no data: views and aliases (found from the schema: every returned tensor aliases an
# input and nothing is written), allocations without a fill, and metadata queries. They cost nothing
# and are not recorded (coverage "none").
_FREE_NAMES = frozenset((
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_unsafe_view", "lift_fresh",
    "lift_fresh_copy", "_local_scalar_dense", "is_same_size", "is_nonzero", "sym_size", "sym_stride",
    "sym_numel", "sym_storage_offset", "resize_", "set_", "_has_compatible_shallow_copy_type", "_to_copy_meta",
    "record_stream", "_version", "size", "stride", "numel", "dim", "is_contiguous", "_nested_tensor_size",
    "_reshape_alias", "_unsafe_index_put_meta", "detach", "alias", "_conj", "_neg_view"))

# aten op name (overload packet, trailing "_" of in-place variants dropped) -> class; anything not
# listed is "elementwise" (pointwise math, activations, dropout, masking, losses' pointwise parts)
_CLASS_PREFIX = (
    ("_foreach_", "optimizer"), ("_fused_adam", "optimizer"), ("_fused_sgd", "optimizer"),
    ("_fused_adagrad", "optimizer"),
)
_CLASS = {
    **dict.fromkeys(("native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
                     "native_batch_norm_backward", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
                     "_native_batch_norm_legit_no_training", "batch_norm_backward", "native_group_norm",
                     "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
                     "cudnn_batch_norm", "cudnn_batch_norm_backward", "miopen_batch_norm"), "normalisation"),
    **dict.fromkeys(("_softmax", "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data",
                     "softmax", "log_softmax"), "softmax"),
    **dict.fromkeys(("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "norm", "linalg_vector_norm",
                     "var", "std", "var_mean", "std_mean", "prod", "any", "all", "cumsum", "cumprod", "logsumexp",
                     "count_nonzero", "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward",
                     "nll_loss2d_backward", "mse_loss", "aminmax", "max_pool2d_with_indices",
                     "max_pool2d_with_indices_backward", "avg_pool2d", "avg_pool2d_backward", "_adaptive_avg_pool2d",
                     "_adaptive_avg_pool2d_backward", "mv", "addmv", "dot", "vdot", "outer", "addr",
                     "nonzero", "bincount", "histc", "unique_dim", "_unique2"), "reduction"),
    **dict.fromkeys(("topk", "sort", "kthvalue", "argsort", "msort", "median", "nanmedian", "quantile",
                     "nanquantile", "mode"), "topk"),
    **dict.fromkeys(("copy", "_to_copy", "clone", "cat", "stack", "index_select", "gather", "scatter", "scatter_add",
                     "scatter_reduce", "embedding", "embedding_dense_backward", "index", "index_put", "index_add",
                     "_index_put_impl", "constant_pad_nd", "repeat", "flip", "roll", "masked_select", "masked_scatter",
                     "_unsafe_index", "_unsafe_index_put", "select_backward", "slice_backward", "narrow_copy",
                     "as_strided_scatter", "slice_scatter", "select_scatter", "diagonal_backward", "contiguous",
                     "unfold_backward", "reflection_pad2d", "replication_pad2d", "col2im", "im2col", "tril", "triu",
                     "expand_copy", "permute_copy", "view_copy", "_unsafe_view_copy", "t_copy", "transpose_copy",
                     "unsqueeze_copy", "squeeze_copy", "cumsum_backward", "split_with_sizes_copy"), "copy"),
}


def _tensor_leaves(x: Any, out: list) -> list:
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for y in x:
            _tensor_leaves(y, out)
    return out


def _nbytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for a tensor: its elements times their size, with broadcast (stride-0)
    dims counted once (an expanded bias is read once, not once per row)."""
    n = 1
    for size, stride in zip(t.shape, t.stride()) if t.layout == torch.strided else ():
        if stride != 0:
            n *= size
    if t.layout != torch.strided:
        n = t.numel()
    return n * t.element_size()


class _FuncInfo:
    """What the recorder needs to know about one aten overload, computed once per overload."""

    __slots__ = ("name", "free", "cls", "writes", "write_kw")

    def __init__(self, func):
        self.name = str(func)
        packet = func.overloadpacket.__name__
        base = packet[:-1] if packet.endswith("_") and not packet.startswith("__") else packet
        schema = func._schema
        writes = [i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write]
        rets = [r for r in schema.returns if "Tensor" in str(r.type)]
        aliasing = bool(rets) and all(r.alias_info is not None and not r.alias_info.is_write for r in rets)
        self.writes = tuple(i for i in writes if not schema.arguments[i].kwarg_only)
        self.write_kw = frozenset(schema.arguments[i].name for i in writes if schema.arguments[i].kwarg_only)
        self.free = (packet in _FREE_NAMES or base in _FREE_NAMES
                     or (not writes and (aliasing or not rets)))
        cls = _CLASS.get(base) or _CLASS.get(packet)
        if cls is None:
            cls = next((c for pre, c in _CLASS_PREFIX if packet.startswith(pre)), "elementwise")
        self.cls = cls


_FUNC_INFO: dict = {}
_FUNC_NAME: dict = {}


def _func_name(func) -> str:
    name = _FUNC_NAME.get(func)
    if name is None:
        name = _FUNC_NAME[func] = str(func)
    return name


def _func_info(func) -> _FuncInfo:
    info = _FUNC_INFO.get(func)
    if info is None:
        info = _FUNC_INFO[func] = _FuncInfo(func)
    return info


class _Mode(TorchDispatchMode):
    def __init__(self, rec: "Recorder"):
        super().__init__()
        self.rec = rec

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.rec
        if not rec._busy:
            rec._busy = True
            try:
                rec._on_op(func, args, kwargs, out)
            finally:
                rec._busy = False
        return out


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if i < len(args):
        return args[i]
    return kwargs.get(name, default)


def _pair(v: Any) -> list[int]:
    v = [int(x) for x in v]
    return v * 2 if len(v) == 1 else v


MAX_RECORD_STEPS = 1_000_000


class Recorder:
    """Context manager returned by :func:`record`; call :meth:`step` at the end of every iteration."""

    def __init__(self, model: torch.nn.Module, path: str | Path, *, steps: int | Iterable[int] = 1,
                 model_name: str | None = None, method: str | None = None, method_params: dict | None = None,
                 batch_size: int | None = None, meta: dict | None = None, dtype: str | None = None):
        if not isinstance(model, torch.nn.Module):
            raise AccelsimError(f"record: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(steps, (bool, str, bytes)) or not isinstance(steps, (int, Iterable)):
            raise AccelsimError(f"record: steps must be an int or a list of step indices, got {steps!r}")
        # a policy bound, not a model number: 10^11 steps used to die in a MemoryError traceback here
        if isinstance(steps, int) and steps > MAX_RECORD_STEPS:
            raise AccelsimError(f"record: steps={steps} is more than {MAX_RECORD_STEPS:,} steps to record")
        wanted = list(range(steps)) if isinstance(steps, int) else list(itertools.islice(steps, MAX_RECORD_STEPS + 1))
        if len(wanted) > MAX_RECORD_STEPS:
            raise AccelsimError(f"record: more than {MAX_RECORD_STEPS:,} step indices to record")
        # int() would truncate 1.5 to 1 or fail with a bare ValueError on "a"
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in wanted):
            raise AccelsimError(f"record: steps must be integer step indices, got {steps!r}")
        wanted = [int(s) for s in wanted]
        if not wanted or min(wanted) < 0 or len(set(wanted)) != len(wanted):
            raise AccelsimError(f"record: steps must be distinct non-negative step indices, got {steps!r}")
        if not isinstance(path, (str, os.PathLike)):
            raise AccelsimError(f"record: path must be a trace file path (str or os.PathLike), "
                                f"got {type(path).__name__}")
        self.model = model
        self.path = Path(path)
        self.steps = sorted(wanted)
        self._wanted = set(wanted)
        self._root = type(model).__name__
        self._names: dict[int, tuple[str, str, torch.nn.Module]] = {}
        if dtype is None:
            floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
            dtype = _dtype_name(floats[0]) if floats else None
        self._header = {
            "torch": torch.__version__, "model": model_name or self._root,
            "method": {"name": method, "params": dict(method_params or {})},
            "dtype": dtype, "batch_size": batch_size, "meta": dict(meta or {}),
        }
        self._batch = batch_size
        self._writer: TraceWriter | None = None
        self._index = 0           # the user's iteration counter (rec.step() increments it)
        self._recorded: list[int] = []
        self._active = False
        self._busy = False
        self._unrecorded: collections.Counter = collections.Counter()
        self._no_grad_ops: collections.Counter = collections.Counter()
        self._no_grad_macs = 0
        self._no_grad_vector = 0  # other (vector) ops of those passes: not part of the step either
        self._passes = {True: 0, False: 0}   # forward passes of the model in recorded steps, by grad mode
        self._warnings: list[str] = []
        self._storage_ids = 0
        # meta["coverage"]: aten op -> [seen, recorded, as]
        self._coverage: dict[str, list] = {}
        self._vec: dict | None = None  # the vector record being merged (written before any other op)

    # ---------------------------------------------------------------- public API
    @property
    def recording(self) -> bool:
        """True while the current iteration is one of the recorded steps."""
        return self._active

    @property
    def step_index(self) -> int:
        return self._index

    def step(self) -> None:
        """Mark the end of one training iteration."""
        if self._writer is None:
            raise AccelsimError("record: rec.step() called outside the `with accelsim.record(...)` block")
        if self._active:
            self._deactivate(flush=True)
        self._index += 1
        if self._index in self._wanted:
            self._activate()

    def __enter__(self) -> "Recorder":
        # A signal (Ctrl-C, SIGTERM/SIGHUP as the CLI raises them) may land anywhere here; __exit__
        # does not run when __enter__ raises, so the temp file is owned before any signal is let in
        # and removed here if activation is interrupted.
        with deferred_signals():
            self._writer = TraceWriter(self.path, None)
        try:
            if self._index in self._wanted:
                self._activate()
        except BaseException:
            try:
                if self._active:
                    self._deactivate(flush=False)
            finally:
                self._writer.abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        w = self._writer
        if exc_type is not None:
            try:
                if self._active:
                    self._deactivate(flush=False)
            finally:
                w.abort()
            return False
        try:
            if self._active:  # the last iteration ended without rec.step(): it is complete, keep it
                self._deactivate(flush=True)
            if not self._recorded:
                raise AccelsimError(
                    f"record: none of the requested steps {_fmt_steps(self.steps)} ran (the loop ended after "
                    f"{self._index} rec.step() calls); nothing written to {self.path}")
            missing = [s for s in self.steps if s not in self._recorded]
            if missing:
                msg = f"steps {_fmt_steps(missing)} were requested but the loop ended before them"
                self._warnings.append(msg)
                warnings.warn(f"accelsim.record: {msg}; {self.path} holds steps {self._recorded}", stacklevel=2)
            meta = self._header["meta"]
            if self._unrecorded:
                meta["unrecorded_ops"] = dict(sorted(self._unrecorded.items()))
            meta["coverage"] = {k: {"seen": v[0], "recorded": v[1], "as": v[2]}
                                for k, v in sorted(self._coverage.items())}
            self._note_forward_passes(meta)
            if self._warnings:
                meta["recorder_warnings"] = list(self._warnings)
            w._header.update(self._header, batch_size=self._batch, steps=list(self._recorded))
            w.close()
        except BaseException:
            w.abort()
            raise
        return False

    def _note_forward_passes(self, meta: dict) -> None:
        """Tell the user (a warning, once each) and the header about forward passes that are not one
        training forward per recorded step."""
        n, k = self._passes[True], len(self._recorded)
        if n > k:
            msg = (f"the model ran {n} training forward passes in {k} recorded step(s); all ops of a step are "
                   "simulated as one training step (call rec.step() once per iteration)")
            self._warnings.append(msg)
            warnings.warn(f"accelsim.record: {msg}", stacklevel=3)
        if self._no_grad_ops:
            ops = sum(self._no_grad_ops.values())
            meta["no_grad_forward"] = {"passes": self._passes[False], "ops": dict(sorted(self._no_grad_ops.items())),
                                       "macs": self._no_grad_macs}
            if self._no_grad_vector:
                meta["no_grad_forward"]["vector_ops"] = self._no_grad_vector
            msg = (f"{ops} conv/matmul op(s) ({self._no_grad_macs} MACs, {self._passes[False]} model forward "
                   "pass(es)) ran under torch.no_grad() (e.g. an eval pass); they are not part of the training "
                   "step and were not recorded (counted in meta.no_grad_forward)")
            self._warnings.append(msg)
            warnings.warn(f"accelsim.record: {msg}", stacklevel=3)

    # ---------------------------------------------------------------- activation
    def _activate(self) -> None:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self._token = object()
        self._seq = 0
        # Module paths are read now, not at record(): methods such as apply_swat may add modules.
        self._names = {id(m): (name or self._root, type(m).__name__, m) for name, m in self.model.named_modules()}
        self._stack: list[tuple[str, str, torch.nn.Module]] = []
        self._cache: dict[tuple, _Entry] = {}
        self._storages: dict[tuple, tuple[_Owner, int]] = {}
        self._fwd_mm: dict[str, list[_FwdMM]] = {}
        self._fwd_keys: dict[tuple, tuple[str, str, _Owner]] = {}
        self._nodes: dict[Any, _Node] = {}
        self._pending: list[dict] = []
        self._score_cache: dict[tuple, tuple] = {}
        self._last_func = None
        self._after_bwd = False  # backward ran in this step and no model forward since: "optimizer"
        self._vec = None
        # Weights by storage identity (_cdata, checked alive), not address: FSDP-style code frees and
        # reallocates a parameter's memory in place, and a dead storage's address is soon reused.
        stores = [p.untyped_storage() for p in self.model.parameters()]
        self._params = {st._cdata: weakref.ref(st) for st in stores}
        self._wderived: dict[int, weakref.ref] = {}
        # Which module owns each parameter (to name ops that use a module's weights functionally, as
        # nn.MultiheadAttention does), and the mask buffers of torch.nn.utils.prune (weight-side).
        self._owners: dict[int, tuple[weakref.ref, str, str, str]] = {}
        self._wmasks: dict[int, weakref.ref] = {}
        for mname, mod in self.model.named_modules():
            for pname, prm in mod.named_parameters(recurse=False):
                st = prm.untyped_storage()
                self._owners.setdefault(st._cdata, (weakref.ref(st), mname or self._root, type(mod).__name__, pname))
            for buf in _prune_masks(mod):
                st = buf.untyped_storage()
                self._wmasks[st._cdata] = weakref.ref(st)
        self._grad_fwd = True  # grad mode when the outermost module of the model stack was entered
        with deferred_signals():  # all hooks or none: _deactivate removes them only when _active
            self._h_pre = register_module_forward_pre_hook(self._pre_hook)
            self._h_post = register_module_forward_hook(self._post_hook)
            self._saved_ctx = torch.autograd.graph.saved_tensors_hooks(self._pack_hook, self._unpack_hook)
            self._saved_ctx.__enter__()
            self._mode = _Mode(self)
            self._mode.__enter__()
            sparsity_handle.add_work_listener(self._note_work)
            self._active = True

    def _deactivate(self, *, flush: bool) -> None:
        with deferred_signals():  # all hooks removed or none (then _active stays True for __exit__)
            self._active = False
            try:
                sparsity_handle.remove_work_listener(self._note_work)
                self._mode.__exit__(None, None, None)
            finally:
                self._saved_ctx.__exit__(None, None, None)
                self._h_pre.remove()
                self._h_post.remove()
        if flush:
            self._flush_vec()
            for rec in self._pending:
                self._writer.add_saved(**rec)
            self._recorded.append(self._index)
        self._vec = None
        # Drop per-step state (mask cache, node map) so nothing outlives the step.
        self._token = None
        self._cache = {}
        self._storages = {}
        self._nodes = {}
        self._pending = []
        self._fwd_mm = {}
        self._fwd_keys = {}
        self._score_cache = {}
        self._wderived = {}
        self._params = {}
        self._owners = {}
        self._wmasks = {}
        self._names = {}

    # ---------------------------------------------------------------- module tracking (forward)
    def _pre_hook(self, mod, inputs) -> None:
        info = self._names.get(id(mod))
        if info is None or info[2] is not mod:
            return  # a module outside the recorded model (e.g. a loss module)
        if not self._stack:  # reentrant checkpointing runs the training forward under no_grad
            self._grad_fwd = torch.is_grad_enabled() or _in_checkpoint_forward()
        self._stack.append(info)
        if mod is self.model and not self._in_backward():
            self._passes[torch.is_grad_enabled()] += 1
            self._after_bwd = False
        if self._batch is None and mod is self.model:
            for x in inputs if isinstance(inputs, tuple) else (inputs,):
                if isinstance(x, torch.Tensor) and x.dim() >= 1:
                    self._batch = int(x.shape[0])
                    break

    def _post_hook(self, mod, inputs, output) -> None:
        if self._stack and self._stack[-1][2] is mod:
            self._stack.pop()

    def _fwd_where(self) -> tuple[str, str, torch.nn.Module | None]:
        if self._stack:
            return self._stack[-1]
        return self._root, self._root, self.model

    def _weight_where(self, w: torch.Tensor, where: tuple) -> tuple:
        """The layer of a forward op (or saved tensor) that uses parameter ``w``: the current module,
        unless the parameter belongs to a submodule of it (``attn.out_proj.weight`` used by
        ``nn.MultiheadAttention``'s functional forward) or is one of several named weights of the
        module itself (``in_proj_weight`` -> ``attn.in_proj``)."""
        hit = self._owners.get(w.untyped_storage()._cdata)
        if hit is None or hit[0]() is None:
            return where
        _, owner, otype, pname = hit
        layer, mtype = where[0], where[1]
        if owner == layer:
            if pname.endswith("_weight"):
                return f"{layer}.{pname.removesuffix('_weight')}", mtype, *where[2:]
            return where
        if owner.startswith(layer + ".") or (layer == self._root and owner != self._root):
            return owner, otype, *where[2:]
        return where

    def _no_grad_fwd(self) -> bool:
        """A forward op outside the training graph: under torch.no_grad() / inference_mode when the
        model (the outermost module on the stack) was entered; inside a custom autograd Function's
        forward grad mode is off too, but the module was entered with it on."""
        if self._in_backward():
            return False
        return not (self._grad_fwd if self._stack else torch.is_grad_enabled())

    def _count_no_grad(self, func, args: tuple, out: Any) -> None:
        self._no_grad_ops[str(func)] += 1
        self._no_grad_macs += _macs(func, args, out)

    @staticmethod
    def _in_backward() -> bool:
        return torch._C._current_graph_task_id() != -1

    def _bwd_where(self, ops: Iterable[tuple]) -> tuple[str, str]:
        node = torch._C._current_autograd_node()
        info = self._nodes.get(node) if node is not None else None
        if info is not None:
            return info.layer, info.module_type
        for k, t in ops:  # a node that unpacked nothing: find a forward use of one of its operands
            hit = self._fwd_keys.get(k)
            if hit is not None and hit[2].holds(t):
                return hit[0], hit[1]
        name = node.name() if node is not None else "?"
        msg = f"backward op in autograd node {name} could not be tied to a layer; recorded under {self._root!r}"
        if msg not in self._warnings:
            self._warnings.append(msg)
        return self._root, self._root

    # ---------------------------------------------------------------- masks
    def _tick(self) -> int:
        self._seq += 1
        return self._seq - 1

    def _store(self, t: torch.Tensor, role: str, layer: str, shape: tuple | None = None) -> int:
        """Tensor id of ``t`` (as laid out) in ``role``; masks computed once per live tensor and step.
        ``shape``: store it as this shape of the same numel (the C-order flattening is unchanged)."""
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t._version, t.dtype, t.device)
        ent = self._cache.get(key)
        if ent is not None and not ent.owner.holds(t):
            ent = None  # the owner died or let go of the memory: this is another tensor
        if ent is None:
            packed, nnz = _pack_mask(t)
            ent = _Entry(_Owner(t), packed, nnz)
            self._cache[key] = ent
        shape = tuple(t.shape) if shape is None else tuple(shape)
        tid = ent.tids.get((role, shape))
        if tid is None:
            tid = self._writer.add_packed(ent.packed, shape, dtype=_dtype_name(t.dtype), role=role,
                                          layer=layer, nnz=ent.nnz)
            ent.tids[(role, shape)] = tid
        return tid

    def _is_param(self, t: torch.Tensor) -> bool:
        """A parameter, a view of one, or a same-size tensor computed from one in this step's forward
        (SWAT's ``W~ = W * mask``, SR-STE's masked weight, a bf16 cast): the weights an op uses."""
        cd = t.untyped_storage()._cdata
        ref = self._params.get(cd) or self._wderived.get(cd)
        return ref is not None and ref() is not None  # alive -> the same storage (unique _cdata)

    def _track_weight_derived(self, args: tuple, out: Any) -> None:
        # An op's floating output is weight-derived if a same-size input is a weight and no other
        # same-size input is an activation (requires grad without being a weight): W * mask counts,
        # x + positional_embedding does not.
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or self._in_backward():
            return
        n = out.numel()
        same = [a for a in args if isinstance(a, torch.Tensor) and a.numel() == n and a.is_floating_point()]
        if not same:
            return
        weights = [self._is_param(a) for a in same]
        if any(weights) and not any(a.requires_grad and not w for a, w in zip(same, weights)):
            st = out.untyped_storage()
            self._wderived[st._cdata] = weakref.ref(st)

    # ---------------------------------------------------------------- ops
    def _on_op(self, func, args: tuple, kwargs: dict, out: Any) -> None:
        in_bwd = self._in_backward()
        if in_bwd:
            self._after_bwd = True
            if self._stack and not _recomputing():
                # non-reentrant checkpointing stops its re-run forward early (an exception through the
                # modules): their forward hooks never popped. No module forward runs in backward.
                self._stack.clear()
        handler = _HANDLERS.get(func)
        if handler is not None:
            if func not in _BWD_HANDLERS and self._no_grad_fwd():
                self._count_no_grad(func, args, out)  # an eval pass: not part of the step, not in coverage
            else:
                cov = self._cover(func, "gemm")
                n = self._nops
                handler(self, func, args, kwargs, out)
                if self._nops > n:
                    cov[1] += 1
        else:
            info = _func_info(func)
            if info.free:
                self._cover(func, "none")
            elif self._stack and not self._grad_fwd and not in_bwd:  # an eval forward (no_grad_forward)
                self._no_grad_vector += 1
            else:
                cov = self._cover(func, "vector")
                if func in _UNMODELED:
                    self._unrecorded[str(func)] += 1
                self._vector(info, args, kwargs, out, in_bwd)
                cov[1] += 1
            if not in_bwd:
                self._track_weight_derived(args, out)
        self._last_func = func

    def _cover(self, func, as_: str) -> list:
        key = func if isinstance(func, str) else _func_name(func)
        c = self._coverage.get(key)
        if c is None:
            c = self._coverage[key] = [0, 0, as_]
        c[0] += 1
        return c

    @property
    def _nops(self) -> int:
        return len(self._writer._ops) + (self._vec is not None)

    def _vector(self, info: _FuncInfo, args: tuple, kwargs: dict, out: Any, in_bwd: bool) -> None:
        """One memory-bound op: counts from the sizes of the tensors it reads and writes (docs/trace-format.md
        "Vector ops"); merged with the previous record when identical (params.kernels)."""
        ins = _tensor_leaves(args, [])
        if kwargs:  # (an out= tensor is only written)
            _tensor_leaves([v for k, v in kwargs.items() if k not in info.write_kw], ins)
        outs = _tensor_leaves(out, [])
        if info.writes or info.write_kw:  # in-place ops: the mutated arguments are written, and read (x += y)
            outs = outs + [a for i in info.writes for a in _tensor_leaves(args[i] if i < len(args) else (), [])]
            outs = outs + _tensor_leaves([kwargs[k] for k in info.write_kw if k in kwargs], [])
            # an in-place op returns the tensor it wrote: count it once
            outs = list({(t.data_ptr(), tuple(t.shape), tuple(t.stride())): t for t in outs}.values())
        allt = ins + outs
        big = max(allt, key=lambda t: t.numel()) if allt else None
        elements = big.numel() if big is not None else 0
        read = sum(_nbytes(t) for t in ins)
        written = sum(_nbytes(t) for t in outs)
        pass_, layer, mtype, recompute = self._vector_where(in_bwd)
        sp = sparsity_handle.current_sparsify_work()  # the method's work marker, or None
        cls = info.cls
        if pass_ == "optimizer" and sp is None and cls in ("elementwise", "copy"):
            cls = "optimizer"  # the optimizer's update (fp32 state in mixed precision)
        params = {"op": info.name, "class": cls, "elements": elements, "bytes_read": read, "bytes_written": written,
                  "dtype": _dtype_name(big.dtype) if big is not None else "float32", "kernels": 1,
                  "sparsify": sp is not None, "dedicated": self._dedicated(sp)}
        if recompute:
            params["recompute"] = True
        self._add_vector(pass_, layer, mtype, info.name, params)

    def _vector_where(self, in_bwd: bool) -> tuple[str, str, str, bool]:
        """(pass, layer, module type, recomputed?) of a vector op."""
        if in_bwd:
            if _recomputing():  # activation checkpointing re-runs forward inside backward
                layer, mtype, _ = self._fwd_where()
                return "fwd", layer, mtype, True
            node = torch._C._current_autograd_node()
            ninfo = self._nodes.get(node) if node is not None else None
            layer, mtype = (ninfo.layer, ninfo.module_type) if ninfo is not None else (self._root, self._root)
            return "bwd", layer, mtype, False
        layer, mtype, _ = self._fwd_where()
        return ("optimizer" if self._after_bwd and not self._stack else "fwd"), layer, mtype, False

    def _dedicated(self, work: str | None) -> str | None:
        """The dedicated kernel the method declares for its work (sparsity/spec.py), if any."""
        if work is None:
            return None
        from accelsim.sparsity.spec import METHOD_SPECS

        spec = METHOD_SPECS.get(self._header["method"]["name"] or "")
        return spec.dedicated_kernel(work) if spec is not None else None

    def _note_work(self, work: str, cls: str, t: torch.Tensor, written: int) -> None:
        """Work of the sparsity method the dispatcher cannot see (accelsim.sparsity.handle.note_hidden_work)."""
        if not self._active or self._busy:
            return
        in_bwd = self._in_backward()
        name = f"accelsim.sparsity.{work}"
        if not in_bwd and self._stack and not self._grad_fwd:
            self._no_grad_vector += 1
            return  # an eval forward
        cov = self._cover(name, "vector")
        pass_, layer, mtype, recompute = self._vector_where(in_bwd)
        params = {"op": name, "class": cls, "elements": int(t.numel()), "bytes_read": _nbytes(t),
                  "bytes_written": int(written), "dtype": _dtype_name(t.dtype), "kernels": 1, "sparsify": True,
                  "dedicated": self._dedicated(work)}
        if recompute:
            params["recompute"] = True
        self._add_vector(pass_, layer, mtype, name, params)
        cov[1] += 1

    def _add_vector(self, pass_: str, layer: str, mtype: str, aten_name: str, params: dict) -> None:
        v = self._vec
        if v is not None and v["pass_"] == pass_ and v["layer"] == layer and v["aten"] == aten_name:
            vp, k = v["params"], v["params"]["kernels"]
            if all(vp[f] == params[f] for f in ("class", "dtype", "sparsify", "dedicated")) and \
                    vp.get("recompute") == params.get("recompute") and \
                    all(vp[f] == params[f] * k for f in ("elements", "bytes_read", "bytes_written")):
                for f in ("elements", "bytes_read", "bytes_written"):
                    vp[f] += params[f]
                vp["kernels"] = k + 1
                return
        self._flush_vec()
        self._vec = {"step": self._index, "seq": self._tick(), "pass_": pass_, "layer": layer,
                     "module_type": mtype, "aten": aten_name, "params": params}

    def _flush_vec(self) -> None:
        v, self._vec = self._vec, None
        if v is not None:
            self._writer.add_vector_op(step=v["step"], seq=v["seq"], pass_=v["pass_"], layer=v["layer"],
                                       module_type=v["module_type"], aten=v["aten"], params=v["params"])

    def _emit(self, pass_: str, kind: str, func, layer: str, mtype: str, operands: list[Operand],
              out_shape, params: dict) -> None:
        self._flush_vec()
        self._writer.add_op(step=self._index, seq=self._tick(), pass_=pass_, kind=kind, layer=layer,
                            module_type=mtype, aten=str(func), operands=operands,
                            out_shape=[int(x) for x in out_shape], params=params)

    def _conv_params(self, stride, padding, dilation, groups, xs, ws, ys) -> dict:
        return {"stride": _pair(stride), "padding": _pair(padding), "dilation": _pair(dilation),
                "groups": int(groups), "input_shape": list(xs), "weight_shape": list(ws), "output_shape": list(ys)}

    @staticmethod
    def _as_2d(x, w, y, stride, padding, dilation) -> tuple:
        """A 1-d convolution as the 2-d one of height 1 it equals (H = R = P = 1, stride / padding /
        dilation 1 / 0 / 1 along H): the same GEMMs and the same masks (docs/trace-format.md)."""
        one = (lambda v, d: [d, int(list(v)[0])])
        return (x.unsqueeze(2), w.unsqueeze(2), y.unsqueeze(2), one(stride, 1), one(padding, 0), one(dilation, 1))

    # A 3-d or a transposed convolution (groups 1) is recorded as the matmuls its GEMMs are, with the
    # windows unfolded (im2col) into a stored operand: fwd conv3d = windows(X) (N*O*P*Q, C*T*R*S) @ W^T;
    # dgrad = dY rows @ W (the col2im happens on chip); wgrad = windows(X)^T @ dY rows. A transposed
    # conv is the input-gradient of the conv with the same weight (torch.nn.ConvTranspose2d docs):
    # fwd = X rows (N*H*W, C_in) @ W (C_in, C_out*R*S); dgrad = windows(dY) @ W^T; wgrad = X rows^T @
    # windows(dY). Same MACs as the conv formula, masks exact; unfolded operands over _UNFOLD_LIMIT
    # elements are not recorded (counted in unrecorded_ops).
    def _mask_u8(self, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(_nonzero_np(t)).view(np.uint8))

    def _add_mask(self, m: torch.Tensor, dtype, role: str, layer: str) -> int:
        return self._writer.add_tensor(m.contiguous().numpy().view(bool), dtype=_dtype_name(dtype), role=role,
                                       layer=layer)

    def _conv_nd(self, args, kwargs, first: int, nd: int) -> tuple:
        def nd_(v, d):
            v = [int(x) for x in (v if v is not None else [d])]
            return v * nd if len(v) == 1 else v
        return (nd_(_arg(args, kwargs, first, "stride"), 1), nd_(_arg(args, kwargs, first + 1, "padding"), 0),
                nd_(_arg(args, kwargs, first + 2, "dilation"), 1))

    def _conv_as_matmul_fwd(self, func, args, kwargs, out, transposed: bool) -> bool:
        x, w = args[0], args[1]
        nd = x.dim() - 2
        if int(_arg(args, kwargs, 8, "groups", 1)) != 1 or nd < 1:
            return False
        stride, padding, dilation = self._conv_nd(args, kwargs, 3, nd)
        extra = {}
        if self._in_backward():
            if not _recomputing():
                return False
            extra = {"recompute": True}
        n, cols = x.shape[0], math.prod(w.shape[1:])
        layer, mtype, _ = self._weight_where(w, self._fwd_where())
        if not transposed:  # windows(X) @ W^T
            rows = n * math.prod(out.shape[2:])
            if rows * cols > _UNFOLD_LIMIT:
                return False
            a = _im2col(self._mask_u8(x), tuple(w.shape[2:]), stride, padding, dilation)
            if tuple(a.shape) != (rows, cols):
                return False
            ta = self._add_mask(a, x.dtype, "activation", layer)
            tw = self._store(w, "weight", layer, (w.shape[0], cols))
            self._emit("fwd", "matmul", func, layer, mtype, [Operand("a", ta), Operand("b", tw, True)],
                       (rows, w.shape[0]), extra)
        else:  # X rows @ W
            rows = n * math.prod(x.shape[2:])
            ta = self._add_mask(_rows(self._mask_u8(x)), x.dtype, "activation", layer)
            tw = self._store(w, "weight", layer, (w.shape[0], cols))
            self._emit("fwd", "matmul", func, layer, mtype, [Operand("a", ta), Operand("b", tw)], (rows, cols), extra)
        self._fwd_keys[_key(w)] = (layer, mtype, _Owner(w))
        return True

    def _conv_as_matmul_bwd(self, func, args, kwargs, out, transposed: bool) -> bool:
        gy, x, w = args[0], args[1], args[2]
        nd = gy.dim() - 2
        if int(_arg(args, kwargs, 9, "groups", 1)) != 1 or nd < 1:
            return False
        stride, padding, dilation = self._conv_nd(args, kwargs, 4, nd)
        mask = list(_arg(args, kwargs, 10, "output_mask", (True, True, True)))
        n, k0, cols = gy.shape[0], w.shape[0], math.prod(w.shape[1:])
        layer, mtype = self._bwd_where([(_key(w), w), (_key(x), x)])
        if not transposed:
            rows = n * math.prod(gy.shape[2:])
            if rows * cols > _UNFOLD_LIMIT:
                return False
            tg = self._add_mask(_rows(self._mask_u8(gy)), gy.dtype, "grad_output", layer)
            if mask[0]:  # dX (as windows) = dY rows @ W
                tw = self._store(w, "weight", layer, (k0, cols))
                self._emit("dgrad", "matmul", func, layer, mtype, [Operand("a", tg), Operand("b", tw)], (rows, cols), {})
            if mask[1]:  # dW^T = windows(X)^T @ dY rows
                a = _im2col(self._mask_u8(x), tuple(w.shape[2:]), stride, padding, dilation)
                ta = self._add_mask(a, x.dtype, "activation", layer)
                self._emit("wgrad", "matmul", func, layer, mtype, [Operand("a", ta, True), Operand("b", tg)],
                           (cols, k0), {})
            return True
        rows = n * math.prod(x.shape[2:])
        if rows * cols > _UNFOLD_LIMIT:
            return False
        g = _im2col(self._mask_u8(gy), tuple(w.shape[2:]), stride, padding, dilation)
        if tuple(g.shape) != (rows, cols):
            return False
        tg = self._add_mask(g, gy.dtype, "grad_output", layer)
        if mask[0]:  # dX rows = windows(dY) @ W^T
            tw = self._store(w, "weight", layer, (k0, cols))
            self._emit("dgrad", "matmul", func, layer, mtype, [Operand("a", tg), Operand("b", tw, True)], (rows, k0), {})
        if mask[1]:  # dW = X rows^T @ windows(dY)
            tx = self._add_mask(_rows(self._mask_u8(x)), x.dtype, "activation", layer)
            self._emit("wgrad", "matmul", func, layer, mtype, [Operand("a", tx, True), Operand("b", tg)], (k0, cols), {})
        return True

    def _conv_fwd(self, func, args, kwargs, out) -> None:
        x, w = args[0], args[1]
        transposed = _arg(args, kwargs, 6, "transposed", False)
        if transposed or x.dim() not in (3, 4):
            if not self._conv_as_matmul_fwd(func, args, kwargs, out, bool(transposed)):
                self._unrecorded[f"{func} ({'transposed' if transposed else f'{x.dim() - 2}-d'} convolution)"] += 1
            return
        if x.dim() == 3:  # conv1d
            x, w, out, st, pd, dl = self._as_2d(x, w, out, _arg(args, kwargs, 3, "stride"),
                                                _arg(args, kwargs, 4, "padding"), _arg(args, kwargs, 5, "dilation"))
            args = (x, w, None, st, pd, dl, False, [0, 0], _arg(args, kwargs, 8, "groups", 1))
            kwargs = {}
        recompute = False
        if self._in_backward():
            if not _recomputing():  # e.g. double backward; not a training forward
                self._unrecorded[f"{func} (inside backward)"] += 1
                return
            recompute = True  # activation checkpointing re-runs the forward
        layer, mtype, _ = self._weight_where(w, self._fwd_where())
        params = self._conv_params(_arg(args, kwargs, 3, "stride"), _arg(args, kwargs, 4, "padding"),
                                   _arg(args, kwargs, 5, "dilation"), _arg(args, kwargs, 8, "groups", 1),
                                   x.shape, w.shape, out.shape)
        if recompute:
            params["recompute"] = True
        tx, tw = self._store(x, "activation", layer), self._store(w, "weight", layer)
        self._fwd_keys[_key(w)] = (layer, mtype, _Owner(w))
        self._emit("fwd", "conv2d", func, layer, mtype, [Operand("input", tx), Operand("weight", tw)],
                   out.shape, params)

    def _conv_bwd(self, func, args, kwargs, out) -> None:
        gy, x, w = args[0], args[1], args[2]
        transposed = _arg(args, kwargs, 7, "transposed", False)
        if transposed or gy.dim() not in (3, 4):
            if not self._conv_as_matmul_bwd(func, args, kwargs, out, bool(transposed)):
                self._unrecorded[f"{func} ({'transposed' if transposed else f'{gy.dim() - 2}-d'} convolution)"] += 1
            return
        if gy.dim() == 3:  # conv1d as a conv2d of height 1
            x, w, gy, st, pd, dl = self._as_2d(x, w, gy, _arg(args, kwargs, 4, "stride"),
                                               _arg(args, kwargs, 5, "padding"), _arg(args, kwargs, 6, "dilation"))
            args = (gy, x, w, None, st, pd, dl, False, [0, 0], _arg(args, kwargs, 9, "groups", 1),
                    _arg(args, kwargs, 10, "output_mask", (True, True, True)))
            kwargs = {}
        mask = list(_arg(args, kwargs, 10, "output_mask", (True, True, True)))
        layer, mtype = self._bwd_where([(_key(w), w), (_key(x), x)])
        params = self._conv_params(_arg(args, kwargs, 4, "stride"), _arg(args, kwargs, 5, "padding"),
                                   _arg(args, kwargs, 6, "dilation"), _arg(args, kwargs, 9, "groups", 1),
                                   x.shape, w.shape, gy.shape)
        tg = self._store(gy, "grad_output", layer)
        if mask[0]:  # grad_input requested: dgrad = grad_output (*) weight
            tw = self._store(w, "weight", layer)
            self._emit("dgrad", "conv2d", func, layer, mtype, [Operand("grad_output", tg), Operand("weight", tw)],
                       x.shape, params)
        if mask[1]:  # grad_weight requested: wgrad = grad_output (*) input
            tx = self._store(x, "activation", layer)
            self._emit("wgrad", "conv2d", func, layer, mtype, [Operand("grad_output", tg), Operand("input", tx)],
                       w.shape, params)

    def _matmul(self, func, kind: str, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, params: dict) -> None:
        ca, ta = _canon(a)
        cb, tb = _canon(b)
        ka, kb = _key(ca), _key(cb)
        in_bwd = self._in_backward()
        if in_bwd and _recomputing():  # activation checkpointing re-runs the forward in backward
            params = {**params, "recompute": True}
            in_bwd = False
        if not in_bwd:
            def is_weight(c):
                return c.is_floating_point() and self._is_param(c)

            wname = "b" if is_weight(cb) else ("a" if is_weight(ca) else None)
            where = self._fwd_where()
            layer, mtype, _ = self._weight_where(cb if wname == "b" else ca, where) if wname else where
            ra = "weight" if wname == "a" else "activation"
            rb = "weight" if wname == "b" else "activation"
            self._fwd_mm.setdefault(layer, []).append(
                _FwdMM(kind, ka, kb, tuple(ca.shape), tuple(cb.shape), wname, _Owner(ca), _Owner(cb), mtype))
            self._fwd_keys[ka] = (layer, mtype, _Owner(ca))
            self._fwd_keys[kb] = (layer, mtype, _Owner(cb))
            pass_ = "fwd"
        else:
            layer, mtype = self._bwd_where([(ka, ca), (kb, cb)])
            layer, mtype = self._bwd_sublayer(kind, layer, mtype, ((ka, ca), (kb, cb)))
            pass_, ra, rb = self._classify_bwd(kind, layer, ca, cb, ka, kb, out)
        ida, idb = self._store(ca, ra, layer), self._store(cb, rb, layer)
        self._emit(pass_, kind, func, layer, mtype, [Operand("a", ida, ta), Operand("b", idb, tb)], out.shape, params)

    def _bwd_sublayer(self, kind: str, layer: str, mtype: str, ops: tuple) -> tuple[str, str]:
        """A backward node tied to a module by an activation it saved may serve a forward op that was
        named after a sublayer (MultiheadAttention's in_proj: its weight is not saved when the input
        needs no gradient): the sublayer whose forward matmul consumed one of this op's operands."""
        pre = layer + "."
        for sub, fms in self._fwd_mm.items():
            if sub.startswith(pre) and any(f.kind == kind and (f.uses("a", ops) or f.uses("b", ops)) for f in fms):
                mt = next((f.mtype for f in fms if f.mtype), mtype)
                node = torch._C._current_autograd_node()
                info = self._nodes.get(node) if node is not None else None
                if info is not None and info.layer == layer:
                    info.rename(sub, mt)
                return sub, mt
        return layer, mtype

    def _classify_bwd(self, kind, layer, ca, cb, ka, kb, out) -> tuple[str, str, str]:
        """(pass, role of a, role of b) of a backward matmul; see the module docstring."""
        cands = [f for f in reversed(self._fwd_mm.get(layer, ())) if f.kind == kind]
        node = torch._C._current_autograd_node()
        info = self._nodes.get(node) if node is not None else None
        def saved_cat(k, c):
            return info.category(k, c) if info is not None else None

        ops = ((ka, ca), (kb, cb))
        grad_of, fwd = None, None
        for f in cands:  # 1. which forward operand does it consume?
            ua, ub = f.uses("a", ops), f.uses("b", ops)
            if ua != ub:
                grad_of, fwd = ("b" if ua else "a"), f
                break
        pass_ = None
        if grad_of is None:  # 2. consumes a saved activation -> weight gradient; a saved weight -> dgrad
            cats = {saved_cat(k, c) for k, c in ops} - {None}
            if cats == {"weight"}:
                pass_ = "dgrad"
            elif cats == {"activation"} and any(f.weight for f in cands):
                pass_ = "wgrad"
        if grad_of is None and pass_ is None:  # 3. output shape = shape of exactly one forward operand
            outs = {tuple(out.shape), tuple(out.mT.shape)} if out.dim() >= 2 else {tuple(out.shape)}
            for f in cands:
                ma, mb = f.sa in outs, f.sb in outs
                if ma != mb:
                    grad_of, fwd = ("a" if ma else "b"), f
                    break
        if grad_of is not None:
            if fwd.weight is None:
                pass_ = "dgrad" if grad_of == "a" else "wgrad"
            else:
                pass_ = "wgrad" if grad_of == fwd.weight else "dgrad"
        if pass_ is None:
            pass_ = "dgrad"
            msg = f"a backward {kind} in {layer} could not be classified as dgrad or wgrad; recorded as dgrad"
            if msg not in self._warnings:
                self._warnings.append(msg)
        def role(c, k):
            ks, cat = ((k, c),), saved_cat(k, c)
            if cat == "weight" or (c.is_floating_point() and self._is_param(c)) or \
                    any(f.weight and f.uses(f.weight, ks) for f in cands):
                return "weight"
            if cat == "activation" or \
                    any(f.uses(n, ks) for f in cands for n in ("a", "b") if n != f.weight):
                return "activation"
            return "grad_output"

        return pass_, role(ca, ka), role(cb, kb)

    def _mm(self, func, args, kwargs, out) -> None:
        self._matmul(func, "matmul", args[0], args[1], out, {})

    def _addmm(self, func, args, kwargs, out) -> None:
        self._matmul(func, "matmul", args[1], args[2], out, {"bias": True})

    def _bmm(self, func, args, kwargs, out) -> None:
        self._matmul(func, "bmm", args[0], args[1], out, {})

    def _baddbmm(self, func, args, kwargs, out) -> None:
        self._matmul(func, "bmm", args[1], args[2], out, {"bias": True})

    # ---------------------------------------------------------------- attention (SDPA)
    def _score_mask(self, bh: int, l: int, s_: int, causal: bool, attn_mask: Any, b: int, h: int) -> tuple:
        """(packed mask, nnz, mask name, structural) of the never-materialised score-side operands
        P and dS, (bh, l, s): the causal triangle (torch's is_causal: key j <= query i); an attn_mask
        as given: boolean True = attend, or additive float where -inf entries are masked out
        (F.scaled_dot_product_attention hands a boolean mask to the fused CPU kernel as 0 / -inf);
        else all ones (a float mask without -inf: a bias, "unknown")."""
        if causal:
            name, structural = "causal", True
        elif isinstance(attn_mask, torch.Tensor) and (attn_mask.dtype == torch.bool or (
                attn_mask.is_floating_point() and bool(torch.isneginf(attn_mask).any()))):
            keep = attn_mask if attn_mask.dtype == torch.bool else ~torch.isneginf(attn_mask)
            m = keep.expand(b, h, l, s_).reshape(bh, l, s_)
            packed, nnz = _pack_mask(m)
            return packed, nnz, "attn_mask", False
        else:
            name, structural = ("unknown" if isinstance(attn_mask, torch.Tensor) else "none"), False
        key = (name, bh, l, s_)
        hit = self._score_cache.get(key)
        if hit is None:
            one = np.tril(np.ones((l, s_), dtype=bool)) if causal else np.ones((l, s_), dtype=bool)
            if (l * s_) % 8 == 0:  # whole bytes per head: pack one head and repeat it (no B*H*L*S bools)
                packed = np.tile(np.packbits(one, axis=None, bitorder="little"), bh)
            else:
                packed = np.packbits(np.broadcast_to(one, (bh, l, s_)), axis=None, bitorder="little")
            hit = self._score_cache[key] = (packed, int(one.sum()) * bh)
        return hit[0], hit[1], name, structural

    def _attn_store(self, t: torch.Tensor, role: str, layer: str) -> int:
        """Tensor id of a (B, H, L, E) attention operand stored as (B*H, L, E)."""
        return self._store(t, role, layer, (math.prod(t.shape[:-2]), t.shape[-2], t.shape[-1]))  # no copy

    def _sdpa(self, func, q, k, v, dropout_p, causal, attn_mask, backend: str, grad_out=None) -> None:
        if q.dim() < 3 or k.shape[:-2] != q.shape[:-2] or v.shape[:-2] != q.shape[:-2] or \
                k.shape[-2] != v.shape[-2] or q.shape[-1] != k.shape[-1]:
            self._unrecorded[f"{func} (grouped-query or broadcast attention)"] += 1
            return
        bh = math.prod(q.shape[:-2])
        l, e, s_, ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
        b, h = (q.shape[0], math.prod(q.shape[1:-2])) if q.dim() >= 4 else (1, bh)
        packed, nnz, mname, structural = self._score_mask(bh, l, s_, bool(causal), attn_mask, b, h)
        att = {"mask": mname, "structural": structural, "dropout_p": float(dropout_p or 0.0), "backend": backend}
        recompute = False
        if grad_out is None:
            layer, mtype, _ = self._fwd_where()
            if self._in_backward():
                if not _recomputing():
                    self._unrecorded[f"{func} (inside backward)"] += 1
                    return
                recompute = True
        else:
            layer, mtype = self._bwd_where([(_key(q), q), (_key(k), k), (_key(v), v)])
        extra = {"recompute": True} if recompute else {}
        tq, tk, tv = (self._attn_store(x, "activation", layer) for x in (q, k, v))
        # P (softmax of the scores) is never materialised: its mask is the one known without it
        tp = self._writer.add_packed(packed, (bh, l, s_), dtype=_dtype_name(q.dtype), role="activation",
                                     layer=layer, nnz=nnz)
        if grad_out is None:  # S = Q K^T, O = P V
            self._emit("fwd", "bmm", func, layer, mtype, [Operand("a", tq), Operand("b", tk, True)], (bh, l, s_),
                       {"attention": {"role": "qk", **att}, **extra})
            self._emit("fwd", "bmm", func, layer, mtype, [Operand("a", tp), Operand("b", tv)], (bh, l, ev),
                       {"attention": {"role": "pv", **att}, **extra})
            return
        tg = self._attn_store(grad_out, "grad_output", layer)
        # dS = P * (dP - rowsum): zero wherever P is, so it has P's mask (stored as grad_output)
        tds = self._writer.add_packed(packed, (bh, l, s_), dtype=_dtype_name(q.dtype), role="grad_output",
                                      layer=layer, nnz=nnz)
        # The fused kernels keep only O and the row log-sum-exp, so backward first recomputes S = Q K^T
        # (FlashAttention-2's backward, Dao 2023, Algorithm 2; torch.utils.flop_counter counts it too);
        # then for O = P V: dP = dO V^T (grad of a: dgrad), dV = P^T dO (grad of b: wgrad);
        # for S = Q K^T: dQ = dS K (dgrad), dK = dS^T Q (wgrad)
        self._emit("fwd", "bmm", func, layer, mtype, [Operand("a", tq), Operand("b", tk, True)], (bh, l, s_),
                   {"attention": {"role": "qk", **att}, "recompute": True})
        self._emit("dgrad", "bmm", func, layer, mtype, [Operand("a", tg), Operand("b", tv, True)], (bh, l, s_),
                   {"attention": {"role": "dp", **att}})
        self._emit("wgrad", "bmm", func, layer, mtype, [Operand("a", tp, True), Operand("b", tg)], (bh, s_, ev),
                   {"attention": {"role": "dv", **att}})
        self._emit("dgrad", "bmm", func, layer, mtype, [Operand("a", tds), Operand("b", tk)], (bh, l, e),
                   {"attention": {"role": "dq", **att}})
        self._emit("wgrad", "bmm", func, layer, mtype, [Operand("a", tds, True), Operand("b", tq)], (bh, s_, e),
                   {"attention": {"role": "dk", **att}})

    def _sdpa_op(self, func, args, kwargs, out) -> None:
        """Any fused SDPA aten op: its argument positions from _SDPA_ARGS (checked against the
        schemas in tests/test_record.py)."""
        q, drop, causal, mask, backend, bwd = _SDPA_ARGS[func.overloadpacket.__name__]
        if mask is None:  # keyword-only attn_mask
            am = kwargs.get("attn_mask")
        else:  # -1: the op takes no mask (flash); else the position of attn_bias
            am = _arg(args, kwargs, mask, "attn_bias") if mask >= 0 else None
        self._sdpa(func, args[q], args[q + 1], args[q + 2], _arg(args, kwargs, drop, "dropout_p", 0.0),
                   _arg(args, kwargs, causal, "is_causal", False), am, backend, grad_out=args[0] if bwd else None)

    # ---------------------------------------------------------------- saved tensors
    def _category(self, t: torch.Tensor) -> str:
        # parameter, a view of one or computed from one (SWAT's W~) -> weight; floating tensors with
        # >= 2 dims and a last dim > 1 -> activation; BN/LN statistics, indices, masks -> other.
        if self._is_prune_mask(t):  # torch.nn.utils.prune's weight_mask, saved by MulBackward0
            return "weight"
        if not t.is_floating_point():
            return "other"
        if self._is_param(t):
            return "weight"
        if t.dim() >= 2 and t.shape[-1] > 1:
            return "activation"
        return "other"

    def _is_prune_mask(self, t: torch.Tensor) -> bool:
        st = t.untyped_storage()
        ref = self._wmasks.get(st._cdata)
        return ref is not None and ref() is st

    def _storage_id(self, t: torch.Tensor) -> int:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.device)
        hit = self._storages.get(key)
        if hit is not None and hit[0].holds(t):
            return hit[1]
        sid = self._storage_ids
        self._storage_ids += 1
        self._storages[key] = (_Owner(t), sid)
        return sid

    def _pack_hook(self, t: torch.Tensor) -> tuple:
        busy, self._busy = self._busy, True
        try:
            if self._in_backward() and not _recomputing():
                node = torch._C._current_autograd_node()
                info = self._nodes.get(node) if node is not None else None
                layer, mtype = (info.layer, info.module_type) if info else (self._root, self._root)
            else:  # forward, or a checkpointed forward re-run in backward
                layer, mtype, _ = self._weight_where(t, self._fwd_where())
            cat = self._category(t)
            tid = None
            if cat in ("activation", "weight"):
                tid = self._store(t, cat, layer)
                nnz = self._writer.tensors[tid].nnz
            else:
                nnz = int(np.count_nonzero(_nonzero_np(t)))
            rec = {"step": self._index, "layer": layer, "shape": list(t.shape), "dtype": _dtype_name(t.dtype),
                   "nnz": nnz, "category": cat, "saved_by": str(self._last_func) if self._last_func else "",
                   "storage": self._storage_id(t), "tensor": tid, "t_pack": self._tick(), "t_unpack": None}
            self._pending.append(rec)
            idx = len(self._pending) - 1
            # Store a detached alias: returning ``t`` itself would make a reference cycle through
            # t.grad_fn for saved outputs, leaking the graph if backward never runs.
            return (self._token, idx, t.detach(), t._version, mtype)
        finally:
            self._busy = busy

    def _unpack_hook(self, handle: tuple) -> torch.Tensor:
        token, idx, t, version, mtype = handle
        # Hooks switch off autograd's own in-place check; do it here, as autograd would.
        if t._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation (version {t._version}, saved at version {version}; seen by accelsim.record)")
        if token is not None and token is self._token:
            busy, self._busy = self._busy, True
            try:
                rec = self._pending[idx]
                rec["t_unpack"] = self._tick()
                node = torch._C._current_autograd_node()
                if node is not None:
                    # The node that unpacks a saved tensor is the one it was saved for: name it, and
                    # tie the node to the layer that saved it (how backward ops find their layer).
                    rec["saved_by"] = node.name()
                    info = self._nodes.get(node)
                    if info is None:
                        info = self._nodes[node] = _Node(rec["layer"], mtype)
                    elif rec["category"] == "weight" and rec["layer"].startswith(info.layer + "."):
                        # a weight names the node's layer more precisely than an activation saved in
                        # the enclosing module (attn -> attn.out_proj)
                        info.rename(rec["layer"], mtype)
                    info.recs.append(rec)
                    info.saved[_key(t)] = (rec["category"], _Owner(t))
            finally:
                self._busy = busy
        return t


_HANDLERS = {
    aten.convolution.default: Recorder._conv_fwd,
    aten.convolution_backward.default: Recorder._conv_bwd,
    aten.mm.default: Recorder._mm,
    aten.addmm.default: Recorder._addmm,
    aten.bmm.default: Recorder._bmm,
    aten.baddbmm.default: Recorder._baddbmm,
}
# scaled-dot-product attention, every fused backend (the math backend is composite: its bmm ops are
# seen). aten op -> (position of query, of dropout_p, of is_causal, of attn_bias (-1: no mask; None:
# the keyword-only attn_mask), backend, backward?); backward ops take grad_out first.
_SDPA_ARGS = {
    "_scaled_dot_product_flash_attention_for_cpu": (0, 3, 4, None, "flash_cpu", False),
    "_scaled_dot_product_flash_attention_for_cpu_backward": (1, 6, 7, None, "flash_cpu", True),
    "_scaled_dot_product_flash_attention": (0, 3, 4, -1, "flash", False),
    "_scaled_dot_product_flash_attention_backward": (1, 10, 11, -1, "flash", True),
    "_scaled_dot_product_efficient_attention": (0, 5, 6, 3, "efficient", False),
    "_scaled_dot_product_efficient_attention_backward": (1, 9, 11, 4, "efficient", True),
    "_scaled_dot_product_cudnn_attention": (0, 5, 6, 3, "cudnn", False),
    "_scaled_dot_product_cudnn_attention_backward": (1, 13, 14, 8, "cudnn", True),
}
for _n in _SDPA_ARGS:
    if hasattr(aten, _n):
        _HANDLERS[getattr(aten, _n).default] = Recorder._sdpa_op


# An unfolded (im2col) operand of a 3-d or transposed convolution is stored as a mask of this many
# elements at most (8 MiB packed); a policy bound on trace size and recording memory, not a model number.
_UNFOLD_LIMIT = 1 << 26


def _rows(m: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) -> (N*prod(S), C): one row per output / input position, channels along it."""
    return m.movedim(1, -1).reshape(-1, m.shape[1])


def _im2col(m: torch.Tensor, k: tuple, stride: list, padding: list, dilation: list) -> torch.Tensor:
    """The conv windows of a (N, C, *S) mask: (N*prod(O), C*prod(k)), rows (n, o...), columns (c, k...)
    (the order of a weight (K, C, *k) flattened), zero padding as the conv pads."""
    nd = len(k)
    pad = [p for pp in reversed(padding) for p in (pp, pp)]
    x = torch.nn.functional.pad(m, pad) if any(pad) else m
    for i in range(nd):
        x = x.unfold(2 + i, dilation[i] * (k[i] - 1) + 1, stride[i])
        if dilation[i] > 1:
            x = x[..., ::dilation[i]]
    perm = [0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd)]
    x = x.permute(perm)
    return x.reshape(math.prod(x.shape[:1 + nd]), math.prod(x.shape[1 + nd:]))


_BWD_HANDLERS = {aten.convolution_backward.default} | {
    getattr(aten, n).default for n in ("_scaled_dot_product_flash_attention_for_cpu_backward",
                                       "_scaled_dot_product_flash_attention_backward",
                                       "_scaled_dot_product_efficient_attention_backward",
                                       "_scaled_dot_product_cudnn_attention_backward") if hasattr(aten, n)}




def _recompute_codes() -> frozenset:
    """Code objects of torch.utils.checkpoint that re-run a checkpointed forward during backward:
    the non-reentrant unpack hook's recompute_fn (the reentrant variant is told by its node)."""
    global _RECOMPUTE_CODES
    if _RECOMPUTE_CODES is None:
        import torch.utils.checkpoint as ck

        codes = set()
        # recompute_fn is a closure defined inside a module-level function (its code is a constant)
        for obj in vars(ck).values():
            code = getattr(obj, "__code__", None)
            if code is not None:
                codes.update(c for c in code.co_consts if getattr(c, "co_name", "") == "recompute_fn")
        _RECOMPUTE_CODES = frozenset(codes)
    return _RECOMPUTE_CODES


_RECOMPUTE_CODES: frozenset | None = None


def _in_checkpoint_forward() -> bool:
    """Is reentrant torch.utils.checkpoint running its first (no_grad) forward? A frame of
    CheckpointFunction.forward is on the stack."""
    import torch.utils.checkpoint as ck

    fn = getattr(getattr(ck, "CheckpointFunction", None), "forward", None)
    code = getattr(fn, "__code__", None)
    f = sys._getframe(1)
    while f is not None and code is not None:
        if f.f_code is code:
            return True
        f = f.f_back
    return False


def _recomputing() -> bool:
    """Is a checkpointed forward being re-run inside backward? Reentrant checkpointing re-runs it in
    the CheckpointFunctionBackward node (its nested backward runs in other nodes: not a re-run);
    non-reentrant checkpointing from an unpack hook, in recompute_fn (a frame on the stack)."""
    node = torch._C._current_autograd_node()
    if node is not None and node.name() == "CheckpointFunctionBackward":
        return True
    codes = _recompute_codes()
    f = sys._getframe(2)
    while f is not None:
        if f.f_code in codes:
            return True
        f = f.f_back
    return False


def _prune_masks(mod: torch.nn.Module) -> list[torch.Tensor]:
    """The ``<name>_mask`` buffers that torch.nn.utils.prune's forward pre-hooks multiply into
    ``<name>_orig`` (``weight = weight_orig * weight_mask``): weight-side, whatever their shape."""
    from torch.nn.utils import prune

    out = []
    for hook in mod._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            buf = mod._buffers.get(f"{hook._tensor_name}_mask")
            if isinstance(buf, torch.Tensor):
                out.append(buf)
    return out


def _macs(func, args: tuple, out: Any) -> int:
    """Dense multiply-accumulates of a conv / matmul from its shapes: each output element of a conv
    sums C/groups * R * S products (weight shape K, C/groups, R, S), of a transposed conv each
    *input* element feeds C_out/groups * R * S; a matmul / bmm output element sums K products."""
    if not isinstance(out, torch.Tensor):
        return 0
    if func is aten.convolution.default:
        x, w = args[0], args[1]
        per = math.prod(w.shape[1:])
        return int((x.numel() if _arg(args, {}, 6, "transposed", False) else out.numel()) * per)
    a = args[1] if func in (aten.addmm.default, aten.baddbmm.default) else args[0]
    return int(out.numel() * a.shape[-1])


def _fmt_steps(steps: list[int]) -> str:
    if len(steps) > 6:
        return f"{steps[0]}..{steps[-1]} ({len(steps)} steps)"
    return str(list(steps))


def record(model: torch.nn.Module, path: str | Path, *, steps: int | Iterable[int] = 1,
           model_name: str | None = None, method: str | None = None, method_params: dict | None = None,
           batch_size: int | None = None, meta: dict | None = None, dtype: str | None = None) -> Recorder:
    """Record some training steps to a trace (format v2): every conv / matmul / attention GEMM with its
    operand masks, every other op as vector work (sparsity work marked), and the saved-for-backward
    tensors; ``meta["coverage"]`` counts every aten op seen.

    ``steps``: an int n (the first n iterations) or the iteration indices to record (counted by
    ``rec.step()`` calls, from 0). Header fields: ``model_name`` (default: the model's class name),
    ``method`` and ``method_params`` (the sparse-training method), ``batch_size`` (default: dim 0
    of the model's first input), ``meta`` (free JSON, e.g. optimizer settings), ``dtype``.
    An exception inside the ``with`` block leaves no file behind.
    """
    return Recorder(model, path, steps=steps, model_name=model_name, method=method, method_params=method_params,
                    batch_size=batch_size, meta=meta, dtype=dtype)
