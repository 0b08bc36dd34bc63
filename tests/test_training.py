"""record_training: argument checks, a tiny real recording, determinism."""

import numpy as np
import pytest
import torch

import accelsim
from accelsim.errors import AccelsimError
from accelsim.sparsity.masks import keep_count
from accelsim.training import record_training


@pytest.fixture(scope="module")
def swat_trace(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "r18_swat.npz"
    calls = []
    torch.manual_seed(123)
    before = torch.rand(1).item()
    torch.manual_seed(123)
    det = torch.are_deterministic_algorithms_enabled()
    path = record_training("resnet18-cifar", "swat", out, sparsity=0.8, warmup=1, steps=1, batch=2,
                           image_size=8, progress=lambda *a: calls.append(a))
    after = torch.rand(1).item()
    assert torch.are_deterministic_algorithms_enabled() == det      # global settings restored
    assert after == before                                          # caller's RNG stream untouched
    return path, calls


def test_tiny_swat_run_gives_loadable_trace_with_target_weight_densities(swat_trace):
    path, calls = swat_trace
    assert calls == [("warmup", 1, 1), ("record", 1, 1)]
    tr = accelsim.load_trace(path)
    tr.validate_masks()
    h = tr.header
    assert h["model"] == "resnet18-cifar" and h["method"]["name"] == "swat"
    assert h["method"]["params"]["sparsity"] == 0.8 and h["batch_size"] == 2
    meta = h["meta"]
    assert meta["warmup"] == 1 and meta["seed"] == 0 and meta["image_size"] == 8
    assert meta["input_shape"] == [2, 3, 8, 8] and "reduced" in meta["image_size_note"]
    fwd = [op for op in tr.ops if op.pass_ == "fwd" and op.kind == "conv2d"]
    assert len(fwd) == 20                                           # 17 3x3 + 3 downsample convs
    for op in fwd:
        w = tr.tensors[op.operand("weight").tensor]
        if op.layer == "conv1":                                     # first layer dense
            assert w.nnz == w.numel
        else:                                                       # SWAT ceil rule, exactly
            assert w.nnz == keep_count(0.2, w.numel), op.layer
    fc = [op for op in tr.ops if op.layer == "fc" and op.pass_ == "fwd" and op.kind == "matmul"]
    assert len(fc) == 1
    wgrads = [op for op in tr.ops if op.pass_ == "wgrad" and op.kind == "conv2d" and op.layer != "conv1"]
    assert len(wgrads) == 19
    for op in wgrads:                                               # saved input: at most 20% non-zero
        x = tr.tensors[op.operand("input").tensor]
        assert x.nnz <= keep_count(0.2, x.numel)
    assert any(tr.tensors[op.operand("input").tensor].nnz == keep_count(0.2, tr.tensors[op.operand("input").tensor].numel)
               for op in wgrads)


def test_same_seed_same_trace_bit_for_bit(tmp_path):
    kw = dict(method="srste", warmup=2, steps=1, batch=2, image_size=8)
    a = record_training("transformer-block", out=tmp_path / "a.npz", **kw)
    b = record_training("transformer-block", out=tmp_path / "b.npz", **kw)
    ta, tb = accelsim.load_trace(a), accelsim.load_trace(b)
    # compare what every op used (not tensor ids: how the recorder shares records is its business)
    assert len(ta.ops) == len(tb.ops) > 0
    for x, y in zip(ta.ops, tb.ops):
        assert (x.pass_, x.kind, x.layer, x.out_shape) == (y.pass_, y.kind, y.layer, y.out_shape)
        for o in x.operands:
            assert np.array_equal(ta.operand_mask(x, o.name), tb.operand_mask(y, o.name))
    assert ta.header["meta"]["warmup_loss_first_last"] == tb.header["meta"]["warmup_loss_first_last"]
    # 2:4 weights of the q projection in the forward matmul
    op = next(o for o in ta.ops if o.layer == "attn.q" and o.pass_ == "fwd" and o.kind == "matmul")
    w = next(ta.tensors[o.tensor] for o in op.operands if ta.tensors[o.tensor].role == "weight")
    assert w.nnz == w.numel // 2


@pytest.mark.parametrize("args, kw, msg", [
    (("resnet19", "swat"), dict(sparsity=0.5), "unknown model"),
    (("resnet18-cifar", "rigl"), {}, "unknown method"),
    (("resnet18-cifar", "swat"), {}, "needs a sparsity"),
    (("resnet18-cifar", "swat"), dict(sparsity=1.0), "sparsity"),
    (("resnet18-cifar", "srste"), dict(sparsity=0.5), r"does not use sparsity \(it takes: n, m, srste_lambda, "
                                                       r"first_layer_dense; sparsity is for swat, gmp\)"),
    (("resnet18-cifar", "dense"), dict(n=2), "method dense does not use n .it takes: no parameters"),
    (("resnet18-cifar", "swat"), dict(sparsity=0.5, m=4), "method swat does not use m"),
    (("resnet18-cifar", "gmp"), {}, "method gmp needs a sparsity"),
    (("resnet18-cifar", "gmp"), dict(sparsity=None), "method gmp needs a sparsity"),
    (("resnet18-cifar", "ssl"), dict(ssl_lambda=-1e-4), r"ssl_lambda must be a number >= 0.0, got -0.0001"),
    (("resnet18-cifar", "srste"), dict(srste_lambda=float("nan")), "srste_lambda must be a number"),
    (("resnet18-cifar", "swat"), dict(sparsity=0.5, topk_period=1.5), "topk_period must be an integer >= 1"),
    (("resnet18-cifar", "swat"), dict(sparsity=0.5, first_layer_dense=1), "first_layer_dense must be true or false"),
    (("resnet18-cifar", "dense"), dict(momentum=1.0), r"momentum must be a number in \[0.0, 1.0\)"),
    (("resnet18-cifar", "dense"), dict(optimizer="adam", momentum=0.9), "momentum is an SGD setting"),
    (("resnet18-cifar", "dense"), dict(seed=True), "seed must be an integer"),
    (("resnet18-cifar", "dense"), dict(image_size=0), "image_size must be an integer >= 1"),
    (("resnet18-cifar", "srste"), dict(n=4, m=4), "n < m"),
    (("resnet18-cifar", "dense"), dict(steps=0), "steps"),
    # policy bounds (training.TrainingParams): 10^11 steps used to die in a MemoryError traceback
    (("resnet18-cifar", "dense"), dict(steps=10**11), r"steps must be an integer in \[1, 1000\], got 100000000000"),
    (("resnet18-cifar", "dense"), dict(warmup=10**6), r"warmup must be an integer in \[0, 100000\]"),
    (("resnet18-cifar", "dense"), dict(batch=10**6), r"batch must be an integer in \[1, 65536\]"),
    (("resnet18-cifar", "dense"), dict(batch=1), "batch"),
    (("resnet18-cifar", "dense"), dict(optimizer="lbfgs"), "optimizer"),
    (("resnet18-cifar", "dense"), dict(lr=0), "lr"),
    (("vgg16-cifar", "dense"), dict(image_size=40), "multiple of 32"),
    (("resnet18-cifar", "swat"), dict(sparsity=0.5, structure="rows", warmup=0), "structure"),
])
def test_bad_arguments_raise_one_line_accelsim_errors(tmp_path, args, kw, msg):
    with pytest.raises(AccelsimError, match=msg) as e:
        record_training(*args, out=tmp_path / "x.npz", **kw)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.npz").exists()


def test_missing_output_directory_is_an_error(tmp_path):
    with pytest.raises(AccelsimError, match="does not exist"):
        record_training("transformer-block", "dense", tmp_path / "no" / "x.npz")
    with pytest.raises(AccelsimError, match="is a directory"):
        record_training("transformer-block", "dense", tmp_path)
    with pytest.raises(AccelsimError, match="out must be a file path .* got NoneType"):  # was a TypeError
        record_training("transformer-block", "dense", None)


def test_model_and_method_lists_agree_with_their_modules():
    from accelsim.models import MODELS
    from accelsim.sparsity import METHODS
    from accelsim import training

    assert training.MODELS == MODELS and training.METHODS == METHODS


def test_model_zoo_layer_counts_and_output_shapes():
    from torch import nn

    from accelsim.models import build_model

    def count(m, cls):
        return sum(isinstance(x, cls) for x in m.modules())

    r18 = build_model("resnet18-cifar")
    assert count(r18, nn.Conv2d) == 20 and r18.conv1.kernel_size == (3, 3) and r18.fc.out_features == 10
    r50 = build_model("resnet50-imagenet", 32)     # 1 stem + 16 bottlenecks x 3 + 4 downsample convs
    assert count(r50, nn.Conv2d) == 53 and r50.conv1.kernel_size == (7, 7) and r50.fc.in_features == 2048
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032          # torchvision's ResNet-50
    assert sum(p.numel() for p in r18.parameters()) == 11_173_962          # CIFAR ResNet-18
    vgg = build_model("vgg16-cifar")
    assert count(vgg, nn.Conv2d) == 13 and count(vgg, nn.BatchNorm2d) == 13
    tb = build_model("transformer-block")
    assert tb.tokens == 64 and tb.attn.q.in_features == 256 and tb.attn.heads == 4
    with torch.no_grad():
        assert r50.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 1000)
        assert tb(torch.zeros(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(AccelsimError, match="multiple of 4"):
        build_model("transformer-block", 30)


def test_digits_data_is_real_and_seeded():
    from accelsim.models.data import DigitsData

    a, b, c = DigitsData(16, seed=1), DigitsData(16, seed=1), DigitsData(16, seed=2)
    xa, ya = a.next_batch(8)
    xb, yb = b.next_batch(8)
    xc, yc = c.next_batch(8)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(ya, yc)
    assert xa.shape == (8, 3, 16, 16) and torch.equal(xa[:, 0], xa[:, 2])
    assert len(a) == 1797 and set(a.labels.tolist()) == set(range(10))
    # the same digit class looks alike: mean images of two disjoint halves of the 0s correlate
    zeros = a.images[a.labels == 0]
    m1, m2 = zeros[::2].mean(0).flatten(), zeros[1::2].mean(0).flatten()
    assert torch.corrcoef(torch.stack([m1, m2]))[0, 1] > 0.95


def test_method_dataclasses_validate_and_map_onto_apply_method():
    import dataclasses

    from accelsim.sparsity.methods import method_parameters
    from accelsim.sparsity.spec import METHOD_SPECS, AspParams, GmpParams, SrsteParams, SwatParams

    p = SwatParams(sparsity=0.9)
    assert dataclasses.asdict(p) == dict(sparsity=0.9, distribution="uniform", structure="unstructured",
                                         topk_period=1, first_layer_dense=True)
    assert SrsteParams(n=1, m=8, srste_lambda=0).srste_lambda == 0.0 and \
        isinstance(SrsteParams(srste_lambda=0).srste_lambda, float)        # int accepted, stored as float
    # Schedules derived from the warmup: ASP prunes half-way; GMP updates every warmup // 10 steps,
    # warmup 25 -> dt 2, 12 updates (ends at step 24, the last warmup step) -- worked by hand.
    assert AspParams().apply_kwargs(21)["prune_at"] == 10
    g = GmpParams(sparsity=0.5).apply_kwargs(25)
    assert (g["frequency"], g["n_updates"], g["final_sparsity"]) == (2, 12, 0.5)
    assert GmpParams(sparsity=0.5).apply_kwargs(0)["n_updates"] == 0
    for name, spec in METHOD_SPECS.items():   # every keyword handed to apply_method is one it takes
        kw = spec.params(**({"sparsity": 0.5} if "sparsity" in spec.params.names() else {})).apply_kwargs(20)
        assert set(kw) <= set(method_parameters(name)), name


def _cli(*argv):
    import contextlib
    import io

    from accelsim.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, err.getvalue()


@pytest.mark.parametrize("argv, msg", [
    (["--method", "swat", "--sparsity", "0.5", "--n", "2"], "record: method swat does not use --n (it takes: "
     "--sparsity, --distribution, --structure, --topk-period, --first-layer-dense; --n is for srste, ste, asp)"),
    (["--method", "dense", "--no-first-layer-dense"], "method dense does not use --first-layer-dense"),
    (["--method", "ssl", "--srste-lambda", "1"], "method ssl does not use --srste-lambda"),
    (["--method", "swat"], "method swat needs a --sparsity"),
    (["--method", "srste", "--n", "3", "--m", "2"], "srste: need 0 < n < m for N:M sparsity, got n=3, m=2"),
])
def test_cli_flag_not_for_the_method_is_a_one_line_error(tmp_path, argv, msg):
    rc, err = _cli("record", "--model", "resnet18-cifar", "-o", str(tmp_path / "x.npz"), "--quiet", *argv)
    assert rc == 2 and err.count("\n") == 1 and msg in err, err
    assert not list(tmp_path.iterdir())


def test_record_without_torch_names_the_install_command(tmp_path):
    """`accelsim record` in a process where `import torch` fails: one line, exit 2."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "fake"          # first on the path: `import torch` finds this and fails
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('No module named torch (test stub)')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]))
    p = subprocess.run([sys.executable, "-m", "accelsim", "record", "--model", "resnet18-cifar", "--method", "swat",
                        "--sparsity", "0.5", "-o", str(tmp_path / "x.npz")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr == ("accelsim: error: accelsim record needs PyTorch, which is not installed; install it with: "
                        "pip install torch==2.13.0 (or pip install 'accelsim[record]')\n")
    assert not (tmp_path / "x.npz").exists()


def test_out_of_memory_is_a_one_line_error(tmp_path, monkeypatch):
    from accelsim import training

    def refuse(*a, **k):  # what torch's CPU allocator raises for a tensor it cannot allocate
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 40000000000000 bytes. Error code 12")

    monkeypatch.setattr(training, "_Run", refuse)
    with pytest.raises(AccelsimError, match=r"^record: out of memory training resnet18-cifar at batch 2, image "
                                            r"size 8 \(try a smaller --batch or --image-size\)$"):
        record_training("resnet18-cifar", "dense", tmp_path / "x.npz", batch=2, image_size=8)
    monkeypatch.setattr(training, "_Run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):                 # other errors are not hidden
        record_training("resnet18-cifar", "dense", tmp_path / "x.npz", batch=2, image_size=8)
    assert not (tmp_path / "x.npz").exists()
