"""Storage formats (Hoefler et al. 2021 §2.2; A100 2:4 metadata): hand-computed sizes."""

import pytest

from accelsim.errors import AccelsimError
from accelsim.sim.formats import FORMATS, best_format, index_bits, nm_kept_slots, storage_bits


def test_index_bits():
    assert [index_bits(r) for r in (0, 1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [0, 0, 1, 2, 2, 3, 3, 4, 10, 11]


def test_every_format_on_4x8_with_8_nonzeros():
    shape, nnz, k = (4, 8), 8, 16
    assert storage_bits("dense", shape, nnz, k) == 32 * 16  # 512
    assert storage_bits("bitmap", shape, nnz, k) == 8 * 16 + 32  # 160
    assert storage_bits("coo", shape, nnz, k) == 8 * (16 + 5)  # log2 32 = 5 -> 168
    # csr: 4 rows x 8 cols: 8 * (16 + 3) column-indexed values + 5 pointers of ceil(log2 9) = 4 bits
    assert storage_bits("csr", shape, nnz, k) == 152 + 20
    # 2:4 along the last dim: 4 rows x 2 groups x 2 slots = 16 slots of 16 + 2 bits
    assert storage_bits("nm", shape, nnz, k, n=2, m=4) == 16 * 18
    assert best_format(shape, nnz, k) == ("bitmap", 160)
    assert best_format(shape, nnz, k, nm=(2, 4)) == ("bitmap", 160)


def test_half_dense_tie_goes_to_earlier_format():
    shape, nnz, k = (4, 8), 16, 16
    assert storage_bits("bitmap", shape, nnz, k) == 16 * 16 + 32  # 288
    assert storage_bits("nm", shape, nnz, k, n=2, m=4) == 16 * 18  # 288
    assert storage_bits("coo", shape, nnz, k) == 16 * 21  # 336
    assert storage_bits("csr", shape, nnz, k) == 16 * 19 + 5 * 5  # pointers hold 0..16: 5 bits
    assert best_format(shape, nnz, k, nm=(2, 4)) == ("bitmap", 288)


def test_very_sparse_vector_prefers_coo():
    # 1 non-zero of 1000 fp32: coo 32 + 10; csr (1-D = one row of 1000 cols) 32 + 10 + 2 pointers x 1 bit
    assert storage_bits("coo", (1000,), 1, 32) == 42
    assert storage_bits("csr", (1000,), 1, 32) == 44
    assert storage_bits("bitmap", (1000,), 1, 32) == 1032
    assert best_format((1000,), 1, 32) == ("coo", 42)


def test_empty_tensor_and_all_zero():
    assert storage_bits("csr", (3, 5), 0, 16) == 0  # pointers that can only hold 0 need 0 bits
    assert storage_bits("bitmap", (3, 5), 0, 16) == 15
    assert best_format((3, 5), 0, 16) == ("coo", 0)
    assert storage_bits("dense", (0, 5), 0, 16) == 0


def test_a100_24_compressed_matrix():
    # docs/sources.md "NVIDIA A100": R x C fp16 matrix -> R x C/2 values + R x C/2 2-bit indices. 16 x 16: 128 x 16 + 128 x 2.
    assert storage_bits("nm", (16, 16), 128, 16, n=2, m=4) == 2048 + 256
    # = 9/16 of dense: half the values plus 1/8 of a value's bits in metadata
    assert storage_bits("nm", (16, 16), 128, 16, n=2, m=4) * 16 == storage_bits("dense", (16, 16), 128, 16) * 9


def test_nm_partial_groups_and_axis():
    assert nm_kept_slots((2, 6), 2, 4) == 2 * (2 + 2)  # 6 = one group of 4 + a partial 2 -> min(2, 2)
    assert nm_kept_slots((3, 5), 2, 4) == 3 * (2 + 1)  # partial group of 1 keeps 1
    # 4-D tensors group along dim 1 (C): (2, 6, 1, 1) -> 2 lines of 6
    assert nm_kept_slots((2, 6, 1, 1), 2, 4) == 8
    assert nm_kept_slots((2, 6, 1, 1), 2, 4, axis=3) == 12  # along W: 12 lines of 1 element
    assert storage_bits("nm", (2, 6, 1, 1), 8, 8, n=2, m=4) == 8 * (8 + 2)
    # 1:8 needs 3-bit positions
    assert storage_bits("nm", (1, 16), 2, 8, n=1, m=8) == 2 * (8 + 3)


def test_bad_inputs():
    with pytest.raises(AccelsimError, match="unknown storage format 'zip'"):
        storage_bits("zip", (4,), 1, 8)
    with pytest.raises(AccelsimError, match="cannot be stored 2:4"):
        storage_bits("nm", (4, 8), 17, 16, n=2, m=4)
    with pytest.raises(ValueError):
        storage_bits("dense", (4,), 5, 8)
    with pytest.raises(ValueError):
        storage_bits("nm", (4,), 1, 8, n=3, m=2)
    assert FORMATS == ("dense", "bitmap", "coo", "csr", "nm")
