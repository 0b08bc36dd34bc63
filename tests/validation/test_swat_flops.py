"""Case 2: SWAT FLOP accounting on ImageNet ResNet-50 / WRN-50-2 shapes."""

import pytest

from accelsim.validation import case_swat_flops
from accelsim.validation.swat_flops import Layer, resnet_imagenet, swat_flops
from validation_testing import require_traces


def test_layer_lists_match_known_totals():
    r50 = resnet_imagenet()
    # 1 conv1 + 16 blocks x 3 convs + 4 downsample + fc = 54 layers
    assert len(r50) == 54
    # conv1: 64 filters x 3 ch x 7x7 x 112x112 outputs
    assert r50[0].macs == 64 * 3 * 49 * 112 * 112 == 118_013_952
    # layer1.0.conv2: 64->64 3x3 at 56x56
    assert next(l for l in r50 if l.name == "layer1.0.conv2").macs == 64 * 64 * 9 * 56 * 56
    # torchvision model table: ResNet-50 4.09 GFLOPS, Wide ResNet-50-2 11.40 GFLOPS (MACs)
    assert sum(l.macs for l in r50) == 4_089_184_256
    assert round(sum(l.macs for l in resnet_imagenet(width_factor=2)) / 1e9, 2) == 11.40
    assert Layer("fc", "linear", 2048, 1000, 1, 1, 1, 1).macs == 2_048_000


def test_closed_form_tiny_network():
    # Hand case: conv1 F1 = 100 MACs dense, the rest T - F1 = 900 at s = 0.5.
    # fwd: dense 1000, sparse 100 + 450 = 550 -> reduction 0.45 = s(1 - f1) = 0.5 * 0.9
    # train: dense 100 (fwd) + 100 (wgrad) + 3*900 = 2900; sparse 200 + 3*450 = 1550
    r = swat_flops("ResNet-50", 0.5)
    f1 = r.f1
    assert r.fwd_reduction == pytest.approx(0.5 * (1 - f1), abs=1e-15)
    t, F1 = r.total_fwd_macs, 118_013_952
    assert r.dense_train_macs == 2 * F1 + 3 * (t - F1)
    assert r.sparse_train_macs == pytest.approx(2 * F1 + 3 * 0.5 * (t - F1))


def test_case_passes_against_readme():
    rep = case_swat_flops.run()
    closed = [c for c in rep.checks if " s=" in c.name]
    assert len(closed) == 8   # 2 models x 2 sparsities x (forward closed form, README training value)
    for c in closed:
        assert c.passed, f"{c.name}: {c.value} vs {c.reference}"


def test_readme_gap_is_explained_by_one_dense_downsample_pass():
    # the reconstruction in the doc: counting one of the three passes of the 1x1 downsample convs
    # dense lands within the README's 0.05 pp rounding for all four published values
    from accelsim.validation.swat_flops import README_TRAIN_REDUCTION
    for (model, s), pub in README_TRAIN_REDUCTION.items():
        alt = swat_flops(model, s, dense_downsample_passes=1)
        assert abs(100 * alt.train_reduction - pub) <= 0.05


def test_trace_crosscheck_fwd_dgrad_exact():
    paths = require_traces(case_swat_flops._traces(), case_swat_flops.TRACE_GLOB)
    rep = case_swat_flops.run()
    exact = [c for c in rep.checks if "= F·d_w per op" in c.name]
    assert len(exact) == 2 * len(paths)
    for c in exact:
        assert c.passed, f"{c.name}: {c.value}"
