"""The published A100 dense vs 2:4 measurements (accelsim/validation/data/a100_24_library.csv)."""

from accelsim.validation import a100_library_data as d


def test_rows_load_with_sources_and_roles():
    rows = d.load()
    assert all(r.source and r.role in d.ROLES and r.conditions for r in rows)
    assert all(r.speedup is not None or r.dense_us is None for r in rows)
    # issue 11's calibration sources, and only those, are marked calibrate
    assert {r.source for r in rows if r.role == "calibrate"} == {
        "Mishra et al. 2021 arXiv 2104.08378 Fig. 3", "pytorch/pytorch#96147", "pytorch/pytorch#90119",
        "NVIDIA/cutlass#408", "NVIDIA/CUDALibrarySamples#57"}
    # pytorch#96147 calibrates on its four named shapes only; its other rows validate
    cal = [(r.m, r.k, r.n) for r in rows if r.source == "pytorch/pytorch#96147" and r.role == "calibrate"]
    assert cal == [(768, 3072, 768), (3072, 768, 3072), (1024, 9408, 2048), (1024, 10240, 256)]


def test_values_match_the_sources():
    rows = d.load()
    slow = next(r for r in rows if (r.source, r.m, r.k, r.n) == ("pytorch/pytorch#96147", 1024, 10240, 256))
    assert (slow.dense_us, slow.sparse_us) == (84.5, 135.7) and slow.speedup < 1  # sparse slower
    s57 = next(r for r in rows if r.source == "NVIDIA/CUDALibrarySamples#57")
    assert round(s57.speedup, 3) == round(0.607959 / 0.545792, 3)
    # cutlass#408 gives TFLOP/s: time = 2 * 16384^3 FLOP / rate (302.3 dense, 243.2 sparse)
    c408 = [r for r in rows if r.source == "NVIDIA/cutlass#408"]
    assert round(2 * 16384**3 / (c408[0].dense_us * 1e-6) / 1e12, 1) == 302.3
    assert round(2 * 16384**3 / (c408[0].sparse_us * 1e-6) / 1e12, 1) == 243.2
    assert round(2 * 16384**3 / (c408[1].sparse_us * 1e-6) / 1e12) == 484 and "1410 MHz" in c408[1].conditions
    mishra = {r.k: r.speedup for r in rows if r.source.startswith("Mishra")}
    assert mishra == {1280: 1.23, 10240: 1.84, 20480: 1.94}
