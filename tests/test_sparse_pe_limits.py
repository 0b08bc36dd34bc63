"""Hardware-file limits of the sparse_pe family that the TensorDash scheduler imposes: a lane row is
one 64-bit word (kernels.py, TensorDash section), so a one-sided machine has at most 63 lanes and a
lookaside of at most 63. Before these checks `lanes: 64` loaded and TensorDash silently reported
1.00x; a two-sided (SparTen-like) machine only divides pair counts by its lanes and keeps any count."""

from pathlib import Path

import pytest

from accelsim.errors import HardwareConfigError
from accelsim.hw import load_hw

HW = Path(__file__).resolve().parents[1] / "hwconfigs"


def _variant(tmp_path, name, old, new):
    text = (HW / f"{name}.yaml").read_text()
    assert old in text
    p = tmp_path / f"{name}_v.yaml"
    p.write_text(text.replace(old, new, 1))
    return p


def test_one_sided_lanes_at_most_63(tmp_path):
    assert load_hw(_variant(tmp_path, "tensordash", "lanes: 16 ", "lanes: 63 ")).compute.lanes == 63
    with pytest.raises(HardwareConfigError, match=r"compute\.lanes: at most 63 for one_sided.*got 64"):
        load_hw(_variant(tmp_path, "tensordash", "lanes: 16 ", "lanes: 64 "))


def test_lookaside_at_most_63(tmp_path):
    assert load_hw(_variant(tmp_path, "tensordash", "lookaside: 5 ", "lookaside: 63 ")).sparsity.lookaside == 63
    with pytest.raises(HardwareConfigError, match=r"sparsity\.lookaside: must be <= 63, got 64"):
        load_hw(_variant(tmp_path, "tensordash", "lookaside: 5 ", "lookaside: 64 "))


def test_two_sided_keeps_wide_lanes(tmp_path):
    assert load_hw(_variant(tmp_path, "sparten_like", "lanes: 16", "lanes: 64")).compute.lanes == 64
