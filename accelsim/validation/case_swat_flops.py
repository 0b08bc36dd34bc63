"""Case 2: SWAT FLOP accounting on ImageNet ResNet-50 / WRN-50-2 vs the SWAT README."""

from __future__ import annotations

from accelsim.validation.report import CaseReport, Check, md_table
from accelsim.validation.swat_flops import (MODELS, README_SOURCE, README_TOL_PP,
                                            README_TRAIN_REDUCTION, resnet_imagenet, swat_flops)

SPARSITIES = (0.8, 0.9)


def run() -> CaseReport:
    rep = CaseReport(2, "SWAT FLOP accounting (ResNet-50, WRN-50-2, ImageNet shapes)", intro=(
        "Layer lists built in `accelsim/validation/swat_flops.py` from the architectures "
        "(torchvision layout, batch 1, 224x224; totals 4.089 GMAC for ResNet-50 and 11.398 GMAC for "
        "WRN-50-2, the 4.09 / 11.40 GFLOPS of torchvision's model table). SWAT-U: conv1 dense "
        "(weights and its image input), every other conv including the 1x1 downsample convs and "
        "the FC at weight = activation sparsity s. Per layer with forward MACs F: "
        "fwd = F·d_w, dgrad = F·d_w, wgrad = F·d_a, conv1 has no dgrad "
        "(FACTS.md, SWAT section). The forward reduction must equal s·(1 − f1) exactly; the "
        "training reduction is compared with the SWAT README, tolerance ±"
        f"{README_TOL_PP:.1f} percentage points (fixed before computing)."))
    rows = []
    for model in MODELS:
        for s in SPARSITIES:
            r = swat_flops(model, s)
            closed = s * (1 - r.f1)
            err = abs(r.fwd_reduction - closed)
            rep.checks.append(Check(
                f"{model} s={s}: forward reduction = s·(1−f1)", f"{100 * closed:.3f}%",
                f"closed form, f1 = {r.f1:.5f} (conv1 {resnet_imagenet(**MODELS[model])[0].macs:,} "
                f"of {r.total_fwd_macs:,} MACs)",
                f"{100 * r.fwd_reduction:.3f}%", f"{err:.1e}", "1e-12", err <= 1e-12))
            pub = README_TRAIN_REDUCTION[(model, s)]
            gap = 100 * r.train_reduction - pub
            rep.checks.append(Check(
                f"{model} s={s}: training FLOP reduction", f"{pub:.1f}%", README_SOURCE,
                f"{100 * r.train_reduction:.2f}%", f"{gap:+.2f} pp", f"±{README_TOL_PP:.1f} pp",
                abs(gap) <= README_TOL_PP))
            alt = swat_flops(model, s, dense_downsample_passes=1)
            rows.append([model, s, f"{r.dense_train_macs / 1e9:.3f}", f"{r.sparse_train_macs / 1e9:.3f}",
                         f"{100 * r.train_reduction:.2f}%", f"{pub:.1f}%",
                         f"{100 * alt.train_reduction:.2f}%", f"{100 * alt.train_reduction - pub:+.2f}"])
    ds = sum(l.macs for l in resnet_imagenet() if l.name.endswith(".downsample"))
    rep.tables.append(
        "Training MACs per image (fwd + dgrad + wgrad, conv/linear only), our reduction, the "
        "README's, and the reduction if one of the three passes of the four 1x1 downsample convs "
        "were counted dense:\n\n" + md_table(
            ["model", "s", "dense G", "SWAT G", "ours", "README", "one downsample pass dense",
             "its gap (pp)"], rows))
    rep.notes.append(
        "**The gap.** Our count is above the README by 2.3-2.7 pp for ResNet-50 and ~1 pp for "
        "WRN-50-2, all inside the tolerance. The gap is not noise: counting one of the three passes "
        f"of the four 1x1 downsample convs dense (their forward MACs are {ds:,}, identical in both "
        "networks because WRN-50-2 widens only the bottleneck 3x3 and its neighbours) reproduces "
        "all four README values to within their 0.05 pp rounding (last column). The added work is "
        "s·F_ds: it scales with s and is the same absolute amount in both networks, which is what "
        "the four published numbers require. That points to the authors' counter treating one "
        "downsample pass (e.g. the wgrad with an un-top-k'd input, or the forward with a dense "
        "weight) as dense; SWAT's README leaves its 'Training/Inference FLOP count' section empty, "
        "so this is a reconstruction, not a quote. accelsim's accounting follows the algorithm as "
        "FACTS.md describes it (downsample convs sparse in all three passes).")
    return rep
