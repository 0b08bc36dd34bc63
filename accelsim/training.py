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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from accelsim.errors import AccelsimError
from accelsim.sparsity.spec import METHODS, Params, method_params, param

MODELS = ("resnet18-cifar", "resnet50-imagenet", "vgg16-cifar", "transformer-block", "gpt-block")
OPTIMIZERS = ("sgd", "adam", "adamw")

Progress = Callable[[str, int, int], None]

TORCH_MISSING = ("accelsim record needs PyTorch, which is not installed; install it with: "
                 "pip install torch==2.13.0 (or pip install 'accelsim[record]')")


# ASSUMPTION: lr 0.05, momentum 0.9, weight decay 5e-4, batch 32 and warmup 20 are ordinary
# CIFAR-style SGD settings chosen so that a short run yields trained-looking masks; they are not
# taken from a paper, and a trace records sparsity patterns, not accuracy.
SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainingParams(Params):
    """The training loop's settings, whatever the method (``accelsim record`` derives its flags here)."""

    # The upper bounds are policy limits against absurd input, not model numbers: a trace holds the
    # masks of every recorded step (1,000 ResNet-50 steps is already ~GBs), and a warmup or batch past
    # these would run for days or fail allocating instead of answering.
    steps: int = param(1, help="training steps to record (at most 1000)", lo=1, hi=1000)
    warmup: int = param(20, help="unrecorded steps first, so masks are not the initial ones (at most 100000)",
                        lo=0, hi=100_000)
    batch: int = param(32, help="minibatch size (at most 65536)", lo=1, hi=65536)
    optimizer: str = param("sgd", help="optimizer", choices=OPTIMIZERS)
    lr: float = param(0.05, help="learning rate", lo=0.0, lo_open=True)
    momentum: float | None = param(None, help=f"SGD momentum (default {SGD_MOMENTUM}; sgd only)", lo=0.0, hi=1.0,
                                   hi_open=True)
    weight_decay: float = param(5e-4, help="weight decay", lo=0.0)
    seed: int = param(0, help="random seed (weights and batch order)", lo=0)
    image_size: int | None = param(None, help="input resolution (default: the model's own)", lo=1)

    def check(self) -> None:
        # Adam/AdamW have betas, not momentum: a --momentum given with them used to be ignored
        if self.momentum is not None and self.optimizer != "sgd":
            raise AccelsimError(f"record: momentum is an SGD setting; optimizer {self.optimizer} does not use it")


TRAINING_KWARGS = TrainingParams.names()


def require_torch():
    """``torch``, or a one-line AccelsimError naming the install command."""
    try:
        import torch
    except ImportError:
        raise AccelsimError(TORCH_MISSING) from None
    return torch


def _out_of_memory(e: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", ())
    return (bool(oom) and isinstance(e, oom)) or "can't allocate memory" in str(e)


def record_training(model: str, method: str, out, *, progress: Progress | None = None,
                    **params: Any) -> Path:
    """Train ``warmup`` steps, record ``steps`` steps to ``out``; returns the trace path.

    ``params``: the training settings (:class:`TrainingParams`: steps, warmup, batch, optimizer, lr,
    momentum, weight_decay, seed, image_size) and the method's own (its dataclass in
    :data:`accelsim.sparsity.spec.METHOD_SPECS`, e.g. swat: sparsity, distribution, structure,
    topk_period, first_layer_dense; srste: n, m, srste_lambda, first_layer_dense). A keyword the
    method does not take is an error, as is any bad value: :class:`AccelsimError` with a one-line
    message before any training. ``progress(stage, done, total)`` is called after every step with
    stage "warmup" or "record".
    """
    # ---- validate everything before the (slow) torch imports and training -------------------
    if model not in MODELS:
        raise AccelsimError(f"record: unknown model {str(model)[:60]!r}; choose one of {', '.join(MODELS)}")
    if method not in METHODS:
        raise AccelsimError(f"record: unknown method {str(method)[:60]!r}; choose one of {', '.join(METHODS)}")
    tp = TrainingParams(**{k: v for k, v in params.items() if k in TRAINING_KWARGS})
    # None = not given (as the old signature's sparsity=None): a method keyword set to None is dropped
    mp = method_params(method, {k: v for k, v in params.items() if k not in TRAINING_KWARGS and v is not None})
    if tp.batch < 2 and model not in ("transformer-block", "gpt-block"):  # no batch norm
        raise AccelsimError(f"record: model {model} has batch norm, which needs batch >= 2, got {tp.batch}")
    if progress is not None and not callable(progress):
        raise AccelsimError("record: progress must be a callable (stage, done, total)")
    if not isinstance(out, (str, os.PathLike)):
        raise AccelsimError(f"record: out must be a file path (str or os.PathLike), got {type(out).__name__}")
    out = Path(os.fspath(out))
    if out.is_dir():
        raise AccelsimError(f"record: output {out} is a directory, expected a file path")
    if not out.parent.is_dir():
        raise AccelsimError(f"record: output directory {out.parent} does not exist")

    torch = require_torch()
    from accelsim.models.zoo import SPECS, resolve_image_size

    size = resolve_image_size(model, tp.image_size)
    opt_cfg: dict[str, Any] = {"name": tp.optimizer, "lr": tp.lr, "weight_decay": tp.weight_decay}
    if tp.optimizer == "sgd":
        opt_cfg["momentum"] = SGD_MOMENTUM if tp.momentum is None else tp.momentum

    prev = torch.are_deterministic_algorithms_enabled()
    # fork_rng: seeding for this run must not change the caller's global RNG stream
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)
        try:
            run = _Run(model, method, mp.apply_kwargs(tp.warmup), size, tp.batch, tp.seed, opt_cfg)
            return run.record(out, steps=tp.steps, warmup=tp.warmup, progress=progress,
                              default_size=SPECS[model].default_image_size)
        except RuntimeError as e:
            # torch's CPU allocator refusing a tensor (e.g. --batch or --image-size too large) is a
            # user's setting, not a bug; anything else keeps its traceback
            if not _out_of_memory(e):
                raise
            raise AccelsimError(f"record: out of memory training {model} at batch {tp.batch}, image size {size} "
                                "(try a smaller --batch or --image-size)") from None
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
        # foreach=True: the multi-tensor implementation PyTorch picks by default when the parameters
        # are on a GPU (torch.optim's "foreach" default; on CPU the default is one kernel per
        # parameter tensor). A trace describes a training step on an accelerator, so its optimizer
        # ops should be the ones a GPU run launches: one _foreach_* op per update term, not one per
        # tensor (v2 traces record and cost them; docs/sources.md "PyTorch foreach optimizers").
        if opt_cfg["name"] == "sgd":
            self.opt = torch.optim.SGD(params, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                                       weight_decay=opt_cfg["weight_decay"], foreach=True)
        elif opt_cfg["name"] == "adam":
            self.opt = torch.optim.Adam(params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"], foreach=True)
        else:
            self.opt = torch.optim.AdamW(params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"], foreach=True)
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
