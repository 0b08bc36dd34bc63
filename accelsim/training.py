"""``record_training``: train a built-in model with a sparse-training method and record a trace.

The loop behind ``accelsim record``. It trains ``warmup`` unrecorded steps first, so the masks in
the trace are those of a model that has started learning rather than the initial ones, then
records ``steps`` steps with :func:`accelsim.record`. Everything that decides the numbers (model,
input size, method and its parameters, optimizer, seed, warmup, torch version, data) goes into the
trace header, so the run can be reproduced bit for bit on the same machine: the seed fixes weights
and batch order, and deterministic algorithms are on for the duration of the call.

Data: scikit-learn's bundled handwritten digits, upsampled (see :mod:`accelsim.models.data`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

from accelsim.errors import AccelsimError

MODELS = ("resnet18-cifar", "resnet50-imagenet", "vgg16-cifar", "transformer-block")
METHODS = ("dense", "swat", "srste", "ste", "asp", "ssl", "gmp")
OPTIMIZERS = ("sgd", "adam", "adamw")
_USES_SPARSITY = ("swat", "gmp")
_USES_NM = ("srste", "ste", "asp")

Progress = Callable[[str, int, int], None]


def _int(name: str, v: Any, lo: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise AccelsimError(f"record: {name} must be an integer >= {lo}, got {v!r}")
    return v


def _num(name: str, v: Any, lo: float, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = True) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{')' if hi_open else ']'}"
        raise AccelsimError(f"record: {name} must be a number in {rng}, got {v!r}")
    return float(v)


def _method_params(method: str, *, sparsity, distribution, structure, topk_period, first_layer_dense,
                   n, m, srste_lambda, ssl_lambda, warmup) -> dict[str, Any]:
    """The keyword arguments of ``apply_method`` for this run (validated there)."""
    if method == "swat":
        return dict(sparsity=sparsity, distribution=distribution, structure=structure,
                    topk_period=topk_period, first_layer_dense=first_layer_dense)
    if method == "srste":
        return dict(n=n, m=m, lam=srste_lambda, first_layer_dense=first_layer_dense)
    if method == "ste":
        return dict(n=n, m=m, first_layer_dense=first_layer_dense)
    if method == "asp":
        # ASP prunes a trained dense model: the first half of the warmup trains dense, the second
        # half fine-tunes with the fixed mask (warmup 0: prune the initial model at once).
        return dict(n=n, m=m, prune_at=warmup // 2, first_layer_dense=first_layer_dense)
    if method == "ssl":
        return dict(lam=ssl_lambda, first_layer_dense=first_layer_dense)
    if method == "gmp":
        # Zhu & Gupta's schedule compressed into the warmup: about 10 mask updates ending at the
        # first recorded step, so the recorded steps run at the final sparsity.
        dt = max(1, warmup // 10)
        return dict(final_sparsity=sparsity, n_updates=warmup // dt, frequency=dt,
                    first_layer_dense=first_layer_dense)
    return {}


# Defaults: srste_lambda = 2e-4 is SR-STE's lambda_W (Zhou et al. 2021, FACTS.md "SR-STE").
# ASSUMPTION: lr 0.05, momentum 0.9, weight decay 5e-4, batch 32, warmup 20 and ssl_lambda 1e-4 are
# ordinary CIFAR-style SGD settings chosen so that a short run yields trained-looking masks; they are
# not taken from a paper, and a trace records sparsity patterns, not accuracy.
def record_training(model: str, method: str, out, *, steps: int = 1, warmup: int = 20,
                    batch: int = 32, sparsity: float | None = None,
                    distribution: str = "uniform",      # swat: uniform (SWAT-U) | erk
                    structure: str = "unstructured",    # swat: unstructured | channel | filter
                    topk_period: int = 1, first_layer_dense: bool = True,
                    n: int = 2, m: int = 4, srste_lambda: float = 2e-4, ssl_lambda: float = 1e-4,
                    optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                    weight_decay: float = 5e-4, seed: int = 0, image_size: int | None = None,
                    progress: Progress | None = None) -> Path:
    """Train ``warmup`` steps, record ``steps`` steps to ``out``; returns the trace path.

    Bad arguments raise :class:`AccelsimError` with a one-line message before any training.
    ``progress(stage, done, total)`` is called after every step with stage "warmup" or "record".
    """
    # ---- validate everything before the (slow) torch imports and training -------------------
    if model not in MODELS:
        raise AccelsimError(f"record: unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if method not in METHODS:
        raise AccelsimError(f"record: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    steps = _int("steps", steps, 1)
    warmup = _int("warmup", warmup, 0)
    batch = _int("batch", batch, 1)
    if batch < 2 and model != "transformer-block":
        raise AccelsimError(f"record: model {model} has batch norm, which needs batch >= 2, got {batch}")
    seed = _int("seed", seed, 0)
    if method in _USES_SPARSITY:
        if sparsity is None:
            raise AccelsimError(f"record: method {method} needs a sparsity (fraction of zeros, e.g. 0.9)")
        sparsity = _num("sparsity", sparsity, 0.0, 1.0)
    elif sparsity is not None:
        extra = " (N:M sets the density n/m)" if method in _USES_NM else ""
        raise AccelsimError(f"record: method {method} does not use a sparsity{extra}")
    if method in _USES_NM:
        n, m = _int("n", n, 1), _int("m", m, 2)
        if n >= m:
            raise AccelsimError(f"record: need n < m for N:M sparsity, got n={n}, m={m}")
    if method == "swat":
        _int("topk_period", topk_period, 1)
    if not isinstance(first_layer_dense, bool):
        raise AccelsimError(f"record: first_layer_dense must be true or false, got {first_layer_dense!r}")
    srste_lambda = _num("srste_lambda", srste_lambda, 0.0)
    ssl_lambda = _num("ssl_lambda", ssl_lambda, 0.0)
    if optimizer not in OPTIMIZERS:
        raise AccelsimError(f"record: unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    lr = _num("lr", lr, 0.0, lo_open=True)
    momentum = _num("momentum", momentum, 0.0, 1.0)
    weight_decay = _num("weight_decay", weight_decay, 0.0)
    if progress is not None and not callable(progress):
        raise AccelsimError("record: progress must be a callable (stage, done, total)")
    if not isinstance(out, (str, os.PathLike)):
        raise AccelsimError(f"record: out must be a file path (str or os.PathLike), got {type(out).__name__}")
    out = Path(os.fspath(out))
    if out.is_dir():
        raise AccelsimError(f"record: output {out} is a directory, expected a file path")
    if not out.parent.is_dir():
        raise AccelsimError(f"record: output directory {out.parent} does not exist")

    from accelsim.models.zoo import SPECS, resolve_image_size

    size = resolve_image_size(model, image_size)
    mparams = _method_params(method, sparsity=sparsity, distribution=distribution, structure=structure,
                             topk_period=topk_period, first_layer_dense=first_layer_dense, n=n, m=m,
                             srste_lambda=srste_lambda, ssl_lambda=ssl_lambda, warmup=warmup)
    opt_cfg = {"name": optimizer, "lr": lr, "weight_decay": weight_decay}
    if optimizer == "sgd":
        opt_cfg["momentum"] = momentum
    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    # fork_rng: seeding for this run must not change the caller's global RNG stream
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)
        try:
            run = _Run(model, method, mparams, size, batch, seed, opt_cfg)
            return run.record(out, steps=steps, warmup=warmup, progress=progress,
                              default_size=SPECS[model].default_image_size)
        finally:
            torch.use_deterministic_algorithms(prev)


class _Run:
    """One seeded training run: model, method handle, optimizer and data stream."""

    def __init__(self, model: str, method: str, mparams: dict, image_size: int, batch: int, seed: int,
                 opt_cfg: dict):
        import torch

        from accelsim.models.data import DigitsData
        from accelsim.models.zoo import build_model
        from accelsim.sparsity import apply_method

        self.torch = torch
        self.model_name, self.method = model, method
        self.image_size, self.batch, self.seed, self.opt_cfg = image_size, batch, seed, opt_cfg
        torch.manual_seed(seed)
        self.model = build_model(model, image_size)
        self.model.train()
        self.handle = apply_method(self.model, method, **mparams)
        self.data = DigitsData(image_size, seed)
        params = self.model.parameters()
        if opt_cfg["name"] == "sgd":
            self.opt = torch.optim.SGD(params, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                                       weight_decay=opt_cfg["weight_decay"])
        elif opt_cfg["name"] == "adam":
            self.opt = torch.optim.Adam(params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
        else:
            self.opt = torch.optim.AdamW(params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
        self.losses: list[float] = []

    def step(self, i: int) -> float:
        """One training iteration (global step index ``i``)."""
        F = self.torch.nn.functional
        x, y = self.data.next_batch(self.batch)
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y) + self.handle.penalty()
        loss.backward()
        self.handle.after_backward()
        self.opt.step()
        self.handle.after_step(i)
        val = float(loss.detach())
        self.losses.append(val)
        return val

    def warm(self, warmup: int, progress: Progress | None) -> None:
        for i in range(warmup):
            self.step(i)
            if progress:
                progress("warmup", i + 1, warmup)

    def header_meta(self, warmup: int, default_size: int) -> dict[str, Any]:
        torch = self.torch
        meta: dict[str, Any] = {
            "image_size": self.image_size,
            "default_image_size": default_size,
            "input_shape": [self.batch, 3, self.image_size, self.image_size],
            "data": "sklearn.datasets.load_digits (1797 8x8 images, 10 labels), bilinear upsampled, "
                    "3 channels, normalised",
            "optimizer": self.opt_cfg,
            "loss": "cross_entropy" + (" + ssl group lasso" if self.method == "ssl" else ""),
            "seed": self.seed,
            "warmup": warmup,
            "first_recorded_step": warmup,
            "torch_version": torch.__version__,
            "device": "cpu",
            "deterministic_algorithms": True,
            "warmup_loss_first_last": [self.losses[0], self.losses[-1]] if self.losses else None,
            "layer_density_at_record_start": {k: round(v, 6) for k, v in self.handle.layer_density().items()},
        }
        if self.image_size != default_size:
            meta["image_size_note"] = (f"input reduced from the model's usual {default_size}x{default_size} "
                                       f"to {self.image_size}x{self.image_size}; layer shapes are not the full-size ones")
        zeroed = getattr(self.handle, "groups_zeroed", None)
        if zeroed is not None:       # SSL: how many groups fell below the zeroing threshold so far
            meta["ssl_groups_zeroed"] = zeroed
        sad = getattr(self.handle, "last_sad", None)
        if sad is not None:
            meta["sad_last_warmup_step"] = sad
        return meta

    def record(self, out: Path, *, steps: int, warmup: int, progress: Progress | None,
               default_size: int) -> Path:
        import accelsim

        self.warm(warmup, progress)
        meta = self.header_meta(warmup, default_size)
        with accelsim.record(self.model, out, steps=steps, model_name=self.model_name,
                             method=self.method, method_params=self.handle.params,
                             batch_size=self.batch, meta=meta) as rec:
            for j in range(steps):
                self.step(warmup + j)
                rec.step()
                if progress:
                    progress("record", j + 1, steps)
        return out
