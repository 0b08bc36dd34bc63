"""Case 2: SWAT FLOP accounting on ImageNet ResNet-50 / WRN-50-2 vs the SWAT README."""

from __future__ import annotations

from accelsim.validation.report import CaseReport, Check, md_table
from accelsim.validation.swat_flops import (MODELS, README_SOURCE, README_TOL_PP,
                                            README_TRAIN_REDUCTION, resnet_imagenet, swat_flops)

SPARSITIES = (0.8, 0.9)
TRACE_GLOB = "*resnet*swat*.npz"  # in accelsim.validation.traces_dir()


def _traces():
    from accelsim.validation import shipped_traces
    return shipped_traces(TRACE_GLOB)


def sparse_operand_of(work) -> str | None:
    """The operand SWAT sparsified for this pass: the weight W~ in fwd and dgrad, the saved input
    X~ in wgrad (docs/sources.md "SWAT as implemented" steps 2-4; dY is never sparsified)."""
    want = "weight" if work.pass_ in ("fwd", "dgrad") else "activation"
    return next((n for n in (work.a, work.b) if work.roles.get(n) == want), None)


def trace_crosscheck(path) -> dict:
    """Per pass: ops, ops where accelsim's one-sided effectual MACs (counting only the SWAT operand's
    zeros) equal F*d exactly, and the summed counts. Integers throughout: exact means
    one_sided * numel == F * nnz."""
    from accelsim.sim.kernels import one_sided_macs
    from accelsim.sim.workload import lower
    from accelsim.trace.format import load_trace
    out = {p: {"ops": 0, "exact": 0, "ours": 0, "closed": 0.0, "worst": (1.0, ""), "dense": 0}
           for p in ("fwd", "dgrad", "wgrad")}
    with load_trace(path) as tr:
        params = (tr.header.get("method") or {}).get("params") or {}
        out["sparsity"] = params.get("sparsity")
        dense_layers = set(params.get("dense_layers") or [])
        out["first_fwd"] = 0
        step0 = min(op.step for op in tr.ops)
        for op in tr.ops:
            if op.step != step0:
                continue
            w = lower(tr, op)
            nm = sparse_operand_of(w)
            if nm is None:
                continue
            got = one_sided_macs(w, "a" if nm == w.a else "b")
            numel, nnz = w.numel(nm), w.nnz[nm]
            r = out[op.pass_]
            r["dense"] += w.dense_macs
            if op.pass_ == "fwd" and op.layer in dense_layers:
                out["first_fwd"] += w.dense_macs
            r["ops"] += 1
            r["exact"] += int(got * numel == w.dense_macs * nnz)
            r["ours"] += got
            r["closed"] += w.dense_macs * nnz / numel
            ratio = got * numel / (w.dense_macs * nnz) if nnz else 1.0
            if abs(ratio - 1) > abs(r["worst"][0] - 1):
                r["worst"] = (ratio, f"{op.layer} ({w.shape_str()})")
    return out


def run() -> CaseReport:
    rep = CaseReport(2, "SWAT FLOP accounting (ResNet-50, WRN-50-2, ImageNet shapes)", intro=(
        "Layer lists built in `accelsim/validation/swat_flops.py` from the architectures "
        "(torchvision layout, batch 1, 224x224; totals 4.089 GMAC for ResNet-50 and 11.398 GMAC for "
        "WRN-50-2, the 4.09 / 11.40 GFLOPS of torchvision's model table). SWAT-U: conv1 dense "
        "(weights and its image input), every other conv including the 1x1 downsample convs and "
        "the FC at weight = activation sparsity s. Per layer with forward MACs F: "
        "fwd = F·d_w, dgrad = F·d_w, wgrad = F·d_a, conv1 has no dgrad "
        '(docs/sources.md "SWAT FLOP accounting"). The forward reduction must equal s·(1 − f1) exactly; the '
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
        "docs/sources.md describes it (downsample convs sparse in all three passes).")
    paths = _traces()
    if not paths:
        from accelsim.validation import traces_label
        rep.notes.append(f"**Trace cross-check not run:** no shipped trace matches `{traces_label(TRACE_GLOB)}`.")
    for path in paths:
        cc = trace_crosscheck(path)
        for p in ("fwd", "dgrad"):
            r = cc[p]
            rep.checks.append(Check(
                f"{path.name}: {p} one-sided effectual MACs = F·d_w per op", 'F·d_w (sources.md "SWAT FLOP accounting")',
                "closed form on the trace's own shapes and masks", f"{r['exact']}/{r['ops']} ops exact",
                f"{r['ops'] - r['exact']} differ", "exact (integers)", r["ops"] > 0 and r["exact"] == r["ops"]))
        r = cc["wgrad"]
        rep.checks.append(Check(
            f"{path.name}: wgrad one-sided effectual MACs vs F·d_a", 'F·d_a (sources.md "SWAT FLOP accounting")',
            "closed form on the trace's own shapes and masks",
            f"{r['exact']}/{r['ops']} ops exact; sum {r['ours']:,} vs {r['closed']:,.0f} "
            f"({r['ours'] / r['closed']:.4f}); furthest {r['worst'][0]:.3f} at {r['worst'][1]}",
            f"{r['ours'] / r['closed'] - 1:+.2%}", "reported (see note)", None))
        sp = cc["sparsity"]
        if sp is not None and cc["fwd"]["dense"]:
            f1 = cc["first_fwd"] / cc["fwd"]["dense"]
            red = 1 - cc["fwd"]["ours"] / cc["fwd"]["dense"]
            rep.checks.append(Check(
                f"{path.name}: forward MAC reduction on the trace (accelsim counts)",
                f"s·(1−f1) = {100 * sp * (1 - f1):.2f}%", f"closed form, s = {sp}, f1 = {f1:.4f} from the trace's shapes",
                f"{100 * red:.2f}%", f"{100 * (red - sp * (1 - f1)):+.2f} pp",
                "reported (top-k keeps ceil((1−s)·numel))", None))
    if paths:
        rep.notes.append(
            "**wgrad and F·d_a.** fwd and dgrad count the weight's zeros: every "
            "non-zero weight meets all N·P·Q windows, so one-sided MACs = N·P·Q·nnz(W) = F·d_w exactly. "
            "wgrad counts the saved input's zeros per window tap, and F·d_a assumes every input element "
            "is used R·S/stride² times. That holds only for stride-1 convs without padding (the 1x1 "
            "stride-1 convs, the FC layer). With padding, border taps read zero padding (never effectual, but in F); "
            "with stride 2, inputs between strides are never read, so whether their top-k non-zeros "
            "count depends on where they fall. accelsim counts the real taps; F·d_a is the "
            'closed-form approximation of docs/sources.md "SWAT FLOP accounting", and the SWAT FLOP numbers above use it.')
    return rep
