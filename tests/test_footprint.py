"""Backward-pass footprint: bytes per format worked by hand from Hoefler et al. 2021 §2.2 (the
formulas in accelsim/sim/formats.py), storage sharing, and the peak sweep over pack/unpack times."""

from types import SimpleNamespace

import numpy as np
import pytest

from accelsim.errors import AccelsimError
from accelsim.sim.footprint import dtype_bits, footprint, nm_fraction


def rec(id, mask, *, layer="l", category="activation", dtype="float32", storage=None, t_pack=0, t_unpack=None,
        step=0, keep_mask=True):
    return SimpleNamespace(id=id, step=step, layer=layer, shape=tuple(mask.shape), dtype=dtype,
                           nnz=int(mask.sum()), category=category, saved_by="test",
                           storage=id if storage is None else storage, tensor=id if keep_mask else None,
                           t_pack=t_pack, t_unpack=t_unpack)


def fake_trace(records, masks):
    return SimpleNamespace(path="fake.npz", saved=records, mask=lambda tid: masks[tid])


# A (4, 8) float32 activation with one non-zero per group of 4 along the last dim: nnz = 8.
ACT = np.zeros((4, 8), dtype=bool)
ACT[:, 0] = ACT[:, 5] = True
# Hand-computed bits (numel 32, nnz 8, k 32):
#   dense  32*32                         = 1024 -> 128 B
#   bitmap 8*32 + 32                     =  288 ->  36 B
#   coo    8*(32 + ceil(log2 32)=5)      =  296 ->  37 B
#   csr    8*(32 + ceil(log2 8)=3) + (4+1)*ceil(log2 9)=4*5  = 280 + 20 = 300 -> 37.5 -> 38 B
#   nm 2:4 kept = 4 rows * 2 groups * 2 = 16 slots * (32 + 2) = 544 -> 68 B
ACT_BYTES = {"dense": 128, "bitmap": 36, "coo": 37, "csr": 38, "nm": 68}


@pytest.mark.parametrize("fmt", ["dense", "bitmap", "coo", "csr", "nm"])
def test_bytes_per_format_by_hand(fmt):
    fp = footprint(fake_trace([rec(0, ACT)], {0: ACT}), format=fmt, n=2, m=4)
    (item,) = fp.items
    assert item.format == fmt
    assert item.stored_bytes == ACT_BYTES[fmt]
    assert item.dense_bytes == 128
    assert item.value_bytes == 32              # 8 values * 4 B, the no-overhead ideal
    assert fp.totals["activation"]["stored"] == ACT_BYTES[fmt]
    assert fp.saved_pct("activation") == pytest.approx(100 * (1 - ACT_BYTES[fmt] / 128))
    assert fp.saved_pct("activation", overhead=False) == pytest.approx(75.0)


def test_auto_picks_smallest_and_nm_only_when_mask_is_nm():
    fp = footprint(fake_trace([rec(0, ACT)], {0: ACT}), format="auto")
    assert (fp.items[0].format, fp.items[0].stored_bytes) == ("bitmap", 36)

    # (2, 8, 1, 1) bf16 weight, one non-zero per group of 4 along C (dim 1): 1:4, nnz 4, numel 16.
    w = np.zeros((2, 8, 1, 1), dtype=bool)
    w[:, 1] = w[:, 6] = True
    # dense 16*16 = 256 -> 32 B; bitmap 4*16+16 = 80 -> 10 B; coo 4*(16+4) = 80 -> 10 B;
    # csr 4*(16+3) + 3*ceil(log2 5)=9 -> 85 -> 11 B; nm 1:4: 2 lines * 2 groups * 1 slot = 4 * (16+2) = 72 -> 9 B
    tr = fake_trace([rec(1, w, category="weight", dtype="torch.bfloat16")], {1: w})
    fp = footprint(tr, format="auto", n=1, m=4)
    assert (fp.items[0].format, fp.items[0].stored_bytes, fp.items[0].dense_bytes) == ("nm", 9, 32)
    # Without the mask the N:M pattern cannot be proven: bitmap (ties with coo, bitmap comes first).
    tr = fake_trace([rec(1, w, category="weight", dtype="bfloat16", keep_mask=False)], {})
    fp = footprint(tr, format="auto", n=1, m=4)
    assert (fp.items[0].format, fp.items[0].stored_bytes) == ("bitmap", 10)


def test_nm_requested_on_non_nm_mask_falls_back_to_dense_with_note():
    bad = ACT.copy()
    bad[0, :3] = True                          # a group with 3 non-zeros: not 2:4
    fp = footprint(fake_trace([rec(0, bad, layer="conv1")], {0: bad}), format="nm")
    assert fp.items[0].format == "dense" and fp.items[0].stored_bytes == 128
    assert fp.notes and "not 2:4" in fp.notes[0] and "conv1" in fp.notes[0]


def test_nm_fraction():
    assert nm_fraction(ACT, 2, 4) == 1.0
    assert nm_fraction(ACT, 0, 4) == 0.0       # every group holds one non-zero
    m = np.zeros((1, 6), dtype=bool)
    m[0, :3] = True                            # groups [1,1,1,0] (3 > 2) and the short [0,0]:
    assert nm_fraction(m, 2, 4) == 0.0         # a group shorter than m is never N:M
    w = np.zeros((1, 4, 2, 2), dtype=bool)     # 4-D: groups run along C (dim 1), not along W
    w[0, :, 0, 0] = True                       # 4 of 4 along C at one pixel: not 2:4
    assert nm_fraction(w, 2, 4) == 0.75        # 4 groups (one per R,S position), one full


def test_shared_storage_counted_once_and_categories_split():
    # The same ReLU output saved by relu and by the next conv (one storage); plus a weight.
    w = np.ones((4, 8), dtype=bool)
    recs = [rec(0, ACT, layer="relu1", storage=7, t_pack=1, t_unpack=9),
            rec(1, ACT, layer="conv2", storage=7, t_pack=2, t_unpack=8),
            rec(2, w, layer="conv2", category="weight", dtype="float16", t_pack=2, t_unpack=8)]
    fp = footprint(fake_trace(recs, {0: ACT, 1: ACT, 2: w}), format="bitmap")
    assert len(fp.items) == 2
    act = next(i for i in fp.items if i.category == "activation")
    assert (act.layer, act.records, act.t_pack, act.t_unpack) == ("relu1", 2, 1, 9)
    # weight (4,8) fp16 fully dense in bitmap: 32*16 + 32 = 544 bits = 68 B vs dense 64 B
    assert fp.totals["weight"] == {"dense": 64, "stored": 68, "values": 64}
    assert fp.totals["all"] == {"dense": 128 + 64, "stored": 36 + 68, "values": 32 + 64}
    assert [lf.layer for lf in fp.layers] == ["relu1", "conv2"]
    assert fp.saved_pct("weight") == pytest.approx(100 * (1 - 68 / 64))   # honest: bitmap costs more


def test_peak_is_max_of_live_bytes_not_sum():
    a = np.ones((4, 8), dtype=bool)            # 128 B dense
    b = np.ones((8,), dtype=bool)              # 32 B
    c = np.ones((4,), dtype=bool)              # 16 B
    recs = [rec(0, a, t_pack=0, t_unpack=10), rec(1, b, t_pack=1, t_unpack=5),
            rec(2, c, t_pack=6, t_unpack=None)]
    fp = footprint(fake_trace(recs, {0: a, 1: b, 2: c}), format="dense")
    # live: t0 128, t1 160, t5 128, t6 144, t10 16 -> peak 160 at t=1 (sum would be 176)
    assert fp.totals["all"]["dense"] == 176
    assert (fp.peak_dense, fp.peak_time_dense) == (160, 1)
    # a pack and an unpack at the same time: the pack counts first (safe side)
    recs = [rec(0, a, t_pack=0, t_unpack=5), rec(1, b, t_pack=5, t_unpack=7)]
    fp = footprint(fake_trace(recs, {0: a, 1: b}), format="dense")
    assert fp.peak_dense == 160


def test_steps_and_errors():
    recs = [rec(0, ACT, step=3), rec(1, ACT, step=4)]
    tr = fake_trace(recs, {0: ACT, 1: ACT})
    assert footprint(tr).step == 3
    assert footprint(tr, step=4).items[0].t_pack == 0
    with pytest.raises(AccelsimError, match="step 5"):
        footprint(tr, step=5)
    with pytest.raises(AccelsimError, match="format"):
        footprint(tr, format="zip")
    assert dtype_bits("torch.float16") == 16 and dtype_bits("int64") == 64
    # torch's alias names and bool (one byte per element in memory)
    assert [dtype_bits(d) for d in ("half", "torch.double", "long", "bool", "bfloat16")] == [16, 64, 64, 8, 16]
    with pytest.raises(AccelsimError, match="unknown dtype"):
        dtype_bits("float4")


def test_transposed_matrix_is_nm_along_dim0():
    # addmm saves W^T: an N:M weight (out, in) shows up as (in, out), N:M along dim 0. Mask (8, 4)
    # fp32, 1:4 down every column, but rows 0 and 4 hold 2 non-zeros (6 of 8 rows 1:4 along dim 1). nnz 8.
    w = np.zeros((8, 4), dtype=bool)
    w[[0, 4], 0] = w[[0, 4], 1] = w[[1, 5], 2] = w[[2, 6], 3] = True
    # dense 1024 b = 128 B; bitmap 8*32+32 = 288 b = 36 B; coo 8*(32+5) = 296 b = 37 B;
    # csr 8*(32+2) + 9*4 = 308 b = 39 B; nm 1:4 along dim 0: 4 columns * 2 groups * 1 slot * (32+2) = 272 b = 34 B
    tr = fake_trace([rec(0, w, category="weight")], {0: w})
    fp = footprint(tr, format="auto", n=1, m=4)
    assert (fp.items[0].format, fp.items[0].stored_bytes) == ("nm", 34)
    assert footprint(tr, format="csr", n=1, m=4).items[0].stored_bytes == 39
    assert nm_fraction(w, 1, 4, axis=1) == 0.75 and nm_fraction(w, 1, 4, axis=0) == 1.0


def test_prune_masks_count_as_weights_in_a_real_recorded_step(tmp_path):
    """torch.nn.utils.prune: ``weight = weight_orig * weight_mask`` makes MulBackward0 save the mask;
    it is weight-side state, for a 1x1 conv (mask shape K,C,1,1) as for a linear layer."""
    pytest.importorskip("torch")
    import accelsim
    from pruned_model import record_pruned_step

    record_pruned_step(tmp_path / "p.npz")
    fp = footprint(accelsim.load_trace(tmp_path / "p.npz"), format="dense")
    # float32, dense bytes by hand:
    #   weight: conv mask 4*3*1*1*4 = 48, conv W = orig*mask 48, fc mask 3*16*4 = 192, fc W^T 192 -> 480
    #   activation: conv input 2*3*2*2*4 = 96, relu output 2*4*2*2*4 = 128 (fc's input is a view of it) -> 224
    # (by shape alone the conv mask would be "other" and the fc mask an "activation": 48 / 416 / 240)
    assert {c: fp.totals[c]["dense"] for c in ("weight", "activation", "other")} == \
        {"weight": 480, "activation": 224, "other": 0}
    by_layer = {lf.layer: lf.dense for lf in fp.layers}
    assert by_layer["conv"] == {"activation": 96, "weight": 96, "other": 0}
    assert by_layer["fc"]["weight"] == 384
