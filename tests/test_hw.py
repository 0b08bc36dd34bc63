"""Hardware YAML: units, strict validation (one-line errors naming file + key), shipped configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from accelsim.errors import HardwareConfigError
from accelsim.hw import load_hw, parse_hw
from accelsim.hw import units

HW = Path(__file__).resolve().parents[1] / "hwconfigs"
SHIPPED = sorted(HW.glob("*.yaml"))


def test_units():
    assert units.parse_frequency("1.41 GHz") == pytest.approx(1.41e9)
    assert units.parse_frequency("700 MHz") == pytest.approx(7e8)
    assert units.parse_size("40 MiB") == 40 * 2**20
    assert units.parse_size("40 MB") == 40 * 10**6
    assert units.parse_size("164 KiB") == 164 * 1024
    assert units.parse_size(12) == 12
    assert units.parse_bandwidth("1555 GB/s", word_bytes=1, clock_hz=1e9) == pytest.approx(1.555e12)
    # 10 words/cycle of 2-byte words at 1 GHz = 20 GB/s
    assert units.parse_bandwidth("10 words/cycle", word_bytes=2, clock_hz=1e9) == pytest.approx(2e10)
    assert units.parse_latency_cycles("500 ns", clock_hz=1.41e9) == 705  # 500e-9*1.41e9 = 705
    assert units.parse_latency_cycles("20 cycles", clock_hz=1e9) == 20
    assert units.parse_time("4 us") == pytest.approx(4e-6)
    with pytest.raises(ValueError, match="unknown unit"):
        units.parse_size("3 parsecs")
    with pytest.raises(ValueError):
        units.parse_frequency(True)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    hw = load_hw(path)
    assert hw.name == path.stem
    assert hw.dram().bandwidth_bytes_per_s > 0
    d = hw.dense()
    assert d.sparsity.kind == "none" and d.compute == hw.compute and d.memory == hw.memory
    # every shipped file says where its numbers come from
    text = path.read_text()
    assert "#" in text and ("sources.md" in text or "scalesim" in text.lower().replace("-", "") or "ASSUMPTION" in text)


def test_shipped_expected_set():
    names = {p.stem for p in SHIPPED}
    assert {"a100_24", "tensordash", "systolic_32x32_ws", "tpu_v1_like", "systolic_128_nm",
            "sparten_like"} <= names


def test_a100_numbers():
    hw = load_hw(HW / "a100_24.yaml")
    c = hw.compute
    # 108 SMs * 4 TCs * 256 FMA * 2 FLOP * 1.41 GHz = 312 TFLOP/s (docs/sources.md "NVIDIA A100")
    assert 2 * hw.peak_macs_per_cycle * hw.clock_hz == pytest.approx(311.9e12, rel=1e-3)
    assert c.mma_shape == (16, 8, 16) and c.sparse_mma_shape == (16, 8, 32)
    assert (hw.sparsity.n, hw.sparsity.m, hw.sparsity.metadata_bits) == (2, 4, 2)
    assert hw.level("l2").capacity_bytes == 40 * 10**6
    assert hw.level("smem").capacity_bytes == 164 * 1024 and not hw.level("smem").shared
    assert c.launch_overhead_s == pytest.approx(4e-6)


def test_tensordash_and_scalesim_equivalents():
    td = load_hw(HW / "tensordash.yaml")
    assert (td.compute.tiles, td.compute.pe_rows, td.compute.pe_cols, td.compute.lanes) == (16, 4, 16, 16)
    assert (td.sparsity.kind, td.sparsity.operand, td.sparsity.lookahead, td.sparsity.lookaside,
            td.sparsity.search) == ("one_sided", "auto", 2, 5, "T")
    s = load_hw(HW / "systolic_32x32_ws.yaml")  # scale.cfg
    assert (s.compute.rows, s.compute.cols, s.compute.dataflow) == (32, 32, "ws")
    assert s.level("ifmap_sram").capacity_bytes == 64 * 1024
    t = load_hw(HW / "tpu_v1_like.yaml")  # google.cfg
    assert (t.compute.rows, t.compute.cols, t.compute.dataflow) == (256, 256, "os")
    assert t.level("ofmap_sram").capacity_bytes == 2048 * 1024
    # 10 words/cycle of 1-byte words: 10 bytes per cycle whatever the clock
    assert t.dram().bandwidth_bytes_per_s / t.clock_hz == pytest.approx(10)


def _base() -> dict:
    return yaml.safe_load((HW / "systolic_32x32_ws.yaml").read_text())


def _write(tmp_path, data, name="bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def _err(tmp_path, data) -> str:
    p = _write(tmp_path, data)
    with pytest.raises(HardwareConfigError) as ei:
        load_hw(p)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg
    return msg


def test_unknown_keys_list_valid_ones(tmp_path):
    d = _base()
    d["compute"]["rowz"] = 3
    msg = _err(tmp_path, d)
    assert "compute.rowz: unknown key (valid: rows, cols, dataflow" in msg
    d = _base()
    d["colour"] = "red"
    assert "colour: unknown key (valid: name, description, family" in _err(tmp_path, d)
    d = _base()
    d["memory"][1]["speed"] = 1
    assert "memory[1].speed: unknown key" in _err(tmp_path, d)


def test_impossible_values(tmp_path):
    d = yaml.safe_load((HW / "systolic_128_nm.yaml").read_text())
    d["sparsity"]["n"] = 6
    assert "sparsity.n: N:M needs N < M, got 6:4" in _err(tmp_path, d)
    d = _base()
    d["memory"][-1]["bandwidth"] = "0 GB/s"
    assert "memory[3].bandwidth: must be > 0" in _err(tmp_path, d)
    d = _base()
    d["memory"][0]["capacity"] = "-4 KiB"
    assert "memory[0].capacity: must be > 0" in _err(tmp_path, d)
    d = _base()
    d["compute"]["dataflow"] = "rs"
    assert "compute.dataflow: 'rs' is not one of os, ws, is" in _err(tmp_path, d)
    d = _base()
    d["compute"]["rows"] = 0
    assert "compute.rows: must be >= 1" in _err(tmp_path, d)
    d = _base()
    d["clock"] = "1 parsec"
    assert "clock: unknown unit" in _err(tmp_path, d)
    d = _base()
    del d["memory"][-1]["bandwidth"]
    assert "needs a bandwidth" in _err(tmp_path, d)
    d = _base()
    d["sparsity"] = {"kind": "one_sided"}
    assert "sparsity.kind: 'one_sided' is not modelled for family 'systolic'" in _err(tmp_path, d)
    d = _base()
    del d["compute"]
    assert "compute: missing required key" in _err(tmp_path, d)


def test_bad_files(tmp_path):
    with pytest.raises(HardwareConfigError, match="no such hardware file"):
        load_hw(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(HardwareConfigError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_hw(p)
    p.write_text("")
    with pytest.raises(HardwareConfigError, match="empty hardware file"):
        load_hw(p)
    # review finding: a non-path raised a bare TypeError; a directory read "cannot read: [Errno 21] ..."
    for bad in (None, 3, {"name": "x"}):
        with pytest.raises(HardwareConfigError, match=f"load_hw: expected a hardware YAML file path .* "
                                                      f"got {type(bad).__name__}$"):
            load_hw(bad)
    with pytest.raises(HardwareConfigError, match=f"^{tmp_path}: is a directory, not a hardware file$"):
        load_hw(tmp_path)


def test_words_per_cycle_uses_clock(tmp_path):
    d = _base()
    d["clock"] = "2 GHz"
    d["memory"][-1]["word_size"] = "2 B"
    hw = load_hw(_write(tmp_path, d, "ok.yaml"))
    assert hw.dram().bandwidth_bytes_per_s == pytest.approx(10 * 2 * 2e9)
    assert math.isinf(hw.level("ifmap_sram").bandwidth_bytes_per_s)


def test_not_a_mapping_names_the_top_level(tmp_path):
    # QA finding: a YAML list or scalar read "x.yaml: : expected a mapping ..." (empty key)
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(HardwareConfigError) as e:
        load_hw(p)
    assert str(e.value).startswith(f"{p}: top level: expected a mapping with keys name, ")
    assert str(e.value).endswith("got list") and ": :" not in str(e.value)
    p.write_text("just a string\n")
    with pytest.raises(HardwareConfigError, match=r"list.yaml: top level: expected a mapping .* got str"):
        load_hw(p)


def test_binary_file_with_yaml_suffix_is_one_line_error(tmp_path):
    p = tmp_path / "trace.yaml"
    p.write_bytes(b"PK\x03\x04\x14\x00\xf3\xff")  # a zip (trace) header: not UTF-8
    with pytest.raises(HardwareConfigError, match=r"trace.yaml: cannot read"):
        load_hw(p)


DOC = Path(__file__).resolve().parents[1] / "docs" / "hwconfig.md"


def test_hwconfig_doc_matches_loader(tmp_path):
    from accelsim.hw import loader

    text = DOC.read_text()

    def section(title):
        return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]

    def table_keys(sec):
        return {k.strip("` ") for line in sec.splitlines() if line.startswith("| `")
                for k in line.split("|")[1].split(",")}
    assert table_keys(section("Top level")) == set(loader.TOP_KEYS)
    assert table_keys(section("`sparsity`")) == set(loader.SPARSITY_KEYS)
    assert table_keys(section("`memory`")) == set(loader.MEMORY_KEYS)
    comp = section("`compute`")
    for fam, keys in loader.COMPUTE_KEYS.items():
        para = comp.split(f"**{fam}**", 1)[1].split("**", 1)[0]
        assert all(f"`{k}`" in para for k in keys), (fam, [k for k in keys if f"`{k}`" not in para])
    # every yaml example loads; tiny_td: 2 tiles x 4 x 16 PEs x 16 lanes = 2048 MACs/cycle,
    # 32 bytes/cycle at 800 MHz = 25.6 GB/s, 100 ns at 800 MHz = 80 cycles
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    assert blocks
    for i, b in enumerate(blocks):
        hw = load_hw(_write_text(tmp_path / f"ex{i}.yaml", b))
    assert hw.peak_macs_per_cycle == 2048 and hw.dram().bandwidth_bytes_per_s == pytest.approx(25.6e9)
    assert hw.dram().latency_cycles == 80 and hw.compute.tap_padded is True
    # the error lines shown at the top are what the loader really says
    errs = [line.split("hwconfigs/x.yaml: ", 1)[1] for line in text.splitlines()
            if line.startswith("accelsim: error: hwconfigs/x.yaml: ")]
    d = _base()
    d["compute"]["rowz"] = 3
    got = [_err(tmp_path, d)]
    d = yaml.safe_load((HW / "systolic_128_nm.yaml").read_text())
    d["sparsity"]["n"] = 6
    got.append(_err(tmp_path, d))
    d = _base()
    d["memory"][-1]["bandwidth"] = "0 GB/s"
    got.append(_err(tmp_path, d))
    assert len(errs) == 3 and [g.split(": ", 1)[1] for g in got] == errs


def _write_text(p, text):
    p.write_text(text)
    return p


def test_duplicate_key_is_an_error(tmp_path):
    # QA finding: PyYAML keeps the last of two equal keys, so a file with `rows: 128` and `rows: 64`
    # loaded silently as a 64-row array. The second `rows` is on line 4 of this file.
    p = tmp_path / "dup.yaml"
    p.write_text("name: x\ncompute:\n  rows: 128\n  rows: 64\n")
    with pytest.raises(HardwareConfigError, match=r"dup.yaml: line 4: invalid YAML \(duplicate key 'rows'\)"):
        load_hw(p)
    for f in sorted(HW.glob("*.yaml")):  # the shipped files have none
        load_hw(f)


# ---- family registry and memory roles (accelsim/hw/family.py, accelsim/hw/families/) -------------


def test_registry_declares_every_family_once():
    from accelsim.hw import family, loader
    from accelsim.sim import engine

    assert family.names() == ("gpu", "sparse_pe", "systolic")
    assert loader.COMPUTE_KEYS == {f: family.get(f).compute_keys for f in family.names()}
    roles = {f: family.get(f).role_names for f in family.names()}
    assert roles == {"systolic": ("ifmap_sram", "filter_sram", "ofmap_sram", "dram"),
                     "sparse_pe": ("buffer", "dram"), "gpu": ("smem", "l2", "dram")}
    for f in sorted(HW.glob("*.yaml")):  # the simulator dispatches through the same registry
        hw = load_hw(f)
        assert engine.family_model(hw).__name__ == f"accelsim.sim.{hw.family}"
    with pytest.raises(HardwareConfigError, match=r"unknown hardware family 'tpu' \(valid: gpu, sparse_pe, systolic\)"):
        family.get("tpu")


def _yaml(name: str) -> dict:
    return yaml.safe_load((HW / name).read_text())


@pytest.mark.parametrize("hw_file, old, new, roles", [
    # issue 9: these renames were accepted silently and moved total cycles 16.4M -> 40.8M, 1.91M -> 24.4M
    ("systolic_32x32_ws.yaml", "ifmap_sram", "input_sram", "ifmap_sram, filter_sram, ofmap_sram, dram"),
    ("tensordash.yaml", "buffer", "sram", "buffer, dram"),
    ("a100_24.yaml", "dram", "hbm", "smem, l2, dram"),
])
def test_a_level_that_fills_no_role_is_an_error(tmp_path, hw_file, old, new, roles):
    d = _yaml(hw_file)
    i = next(j for j, lv in enumerate(d["memory"]) if lv["name"] == old)
    d["memory"][i]["name"] = new
    msg = _err(tmp_path, d)
    assert msg.endswith(f"bad.yaml: memory[{i}].name: '{new}' is not a memory role of family "
                        f"{d['family']} (valid roles: {roles})")


def test_missing_role_extra_levels_order_capacity_and_sharing(tmp_path):
    d = _base()
    del d["memory"][2]  # no ofmap_sram
    assert _err(tmp_path, d).endswith("bad.yaml: memory: no level ofmap_sram (family systolic needs one level "
                                      "per role: ifmap_sram, filter_sram, ofmap_sram, dram)")
    d = _base()
    d["memory"] = [d["memory"][3]] + d["memory"][:3]  # dram first: the last level lacks a bandwidth
    assert _err(tmp_path, d).endswith("bad.yaml: memory[3].bandwidth: the outermost level (DRAM) needs a bandwidth")
    d["memory"][3]["bandwidth"] = "1 GB/s"
    assert _err(tmp_path, d).endswith("bad.yaml: memory[3].name: the outermost (last) level must be dram, "
                                      "got 'ofmap_sram'")
    d = _base()
    d["memory"] = d["memory"] + [{"name": "l", "capacity": "1 KiB"}] * 1_000_000
    # refused before parsing the levels (one level per role), so a million levels fail at once
    with pytest.raises(HardwareConfigError, match=r"^bad.yaml: memory: 1000004 levels, family systolic has 4 "
                                                  r"memory roles \(ifmap_sram, filter_sram, ofmap_sram, dram\)$"):
        parse_hw(d, "bad.yaml")
    d = _base()
    del d["memory"][1]["capacity"]  # an SRAM without a size was silently unbounded
    assert _err(tmp_path, d).endswith("bad.yaml: memory[1].capacity: level filter_sram (GEMM B operand SRAM) "
                                      "needs a capacity")
    d = _yaml("a100_24.yaml")
    d["memory"][0]["shared"] = True  # smem is per SM: the GPU model sizes its pipeline per SM
    assert _err(tmp_path, d).endswith("bad.yaml: memory[0].shared: level smem (shared memory, per SM) is one "
                                      "instance per SM/unit: write shared: false")


def test_gpu_checks_run_at_load(tmp_path):
    # issue 9: CTA tile / MMA shape consistency and the shared-memory fit were checked only inside
    # the cost function; now load_hw refuses the file
    d = _yaml("a100_24.yaml")
    d["compute"]["cta_tile"] = [[128, 128, 16]]  # K 16 is not a multiple of sparse mma k 32
    assert "bad.yaml: compute.cta_tile: [128, 128, 16] is not a multiple of sparse_mma_shape [16, 8, 32]" \
        in _err(tmp_path, d)
    d = _yaml("a100_24.yaml")
    d["compute"]["sparse_mma_shape"] = [16, 8, 24]  # 3072 MACs: not a multiple of 2048
    assert "bad.yaml: compute.sparse_mma_shape: [16, 8, 24] does not hold a whole multiple" in _err(tmp_path, d)
    d = _yaml("a100_24.yaml")
    d["memory"][0]["capacity"] = "16 KiB"
    assert "of smem per SM (two stages of A and B slices), it holds 16384" in _err(tmp_path, d)
