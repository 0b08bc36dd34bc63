"""Hostile hardware YAML (issue 9 §3): each input is one short HardwareConfigError line, refused
before it costs time or memory; plus the YAML traps that mislead (kind: 2:4) and the allow_extreme
switch (docs/hwconfig.md "Limits")."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from accelsim.errors import HardwareConfigError
from accelsim.hw import catalog, load_hw, parse_hw, units
from accelsim.hw.loader import MAX_HW_FILE_BYTES
from accelsim.hw.yaml_input import MAX_DEPTH, MAX_NODES, parse_yaml_text

# A small valid N:M systolic machine; each test swaps one line.
BASE = """\
name: tiny_nm
family: systolic
clock: 1 GHz
compute:
  rows: 8
  cols: 8
  dataflow: ws
  data_type: int8
sparsity:
  kind: nm
  operand: weight
  n: 2
  m: 4
memory:
  - name: ifmap_sram
    capacity: 64 KiB
  - name: filter_sram
    capacity: 64 KiB
  - name: ofmap_sram
    capacity: 64 KiB
  - name: dram
    bandwidth: 10 GB/s
    latency: 100 cycles
"""


def _variant(old: str, new: str, base: str = BASE) -> str:
    assert base.count(old) == 1, old
    return base.replace(old, new)


def _err(tmp_path, text: str | bytes, name: str = "x.yaml") -> str:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    with pytest.raises(HardwareConfigError) as ei:
        load_hw(p)
    msg = str(ei.value)
    # one line, naming the file, never an unbounded value
    assert "\n" not in msg and msg.startswith(str(p)) and len(msg) < 400, msg
    return msg


def test_base_loads(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text(BASE)
    hw = load_hw(p)
    assert (hw.sparsity.n, hw.sparsity.m) == (2, 4) and hw.clock_hz == 1e9
    assert hw.dram().bandwidth_bytes_per_s == 10e9 and hw.dram().latency_cycles == 100


@pytest.mark.parametrize("written, value", [("2:4", " (YAML 1.1 reads it as the base-60 number 124)"),
                                            ('"2:4"', ""), ("1:64", "")])
def test_kind_n_colon_m_hint(tmp_path, written, value):
    # YAML 1.1 (PyYAML) reads a plain 2:4 as 2*60 + 4 = 124; 1:64 stays a string (64 > 59)
    nm = written.strip('"').split(":")
    msg = _err(tmp_path, _variant("  kind: nm\n", f"  kind: {written}\n"))
    assert f"line 10: sparsity.kind: '{written.strip(chr(34))}' is not a sparsity kind{value}" in msg
    assert msg.endswith(f"write kind: nm, n: {nm[0]}, m: {nm[1]}")


def test_base60_elsewhere_is_named(tmp_path):
    msg = _err(tmp_path, _variant("  rows: 8\n", "  rows: 1:30\n"))
    assert "compute.rows: '1:30' reads as the base-60 number 90 in YAML 1.1" in msg  # 1*60 + 30


def test_plausibility_floors_and_allow_extreme(tmp_path):
    slow = _variant("clock: 1 GHz\n", "clock: 500 kHz\n")
    assert "clock: '500 kHz' is below 1 MHz" in _err(tmp_path, slow) and "allow_extreme: true" in _err(tmp_path, slow)
    thin = _variant("bandwidth: 10 GB/s", "bandwidth: 900 KB/s")
    assert "memory[3].bandwidth: '900 KB/s' is below 1 MB/s" in _err(tmp_path, thin)
    p = tmp_path / "forced.yaml"
    p.write_text("allow_extreme: true\n" + _variant("bandwidth: 10 GB/s", "bandwidth: 900 KB/s", slow))
    hw = load_hw(p)
    assert hw.clock_hz == 5e5 and hw.dram().bandwidth_bytes_per_s == 9e5
    assert "allow_extreme: expected true or false, got 'yes please'" in _err(
        tmp_path, "allow_extreme: yes please\n" + BASE)
    # exactly at the floors: accepted without the switch
    p.write_text(_variant("bandwidth: 10 GB/s", "bandwidth: 1 MB/s", _variant("clock: 1 GHz\n", "clock: 1 MHz\n")))
    assert load_hw(p).clock_hz == 1e6


@pytest.mark.parametrize("old, new, expect", [
    ("clock: 1 GHz\n", "clock: .inf\n", "line 3: clock: '.inf' is not a finite number"),
    ("clock: 1 GHz\n", "clock: .nan\n", "line 3: clock: '.nan' is not a finite number"),
    ("clock: 1 GHz\n", "clock: 1.0e+400\n", "line 3: clock: '1.0e+400' is not a finite number"),
    ("clock: 1 GHz\n", "clock: 1.0e400\n", "clock: '1.0e400' is not finite"),  # YAML 1.1: a string (no sign)
    ("clock: 1 GHz\n", "clock: 1e400 Hz\n", "clock: '1e400 Hz' is not finite"),
    ("bandwidth: 10 GB/s", "bandwidth: 1e-300 B/s", "memory[3].bandwidth: '1e-300 B/s' is below 1 B/s"),
    ("latency: 100 cycles", "latency: 1e300 cycles", "memory[3].latency: '1e300 cycles' is too large"),
    ("latency: 100 cycles", "latency: 1.0e+300", "memory[3].latency: 1e+300 is too large"),
    ("  rows: 8\n", "  rows: 1" + "0" * 400 + "\n", "compute.rows: integer of 401 digits is too large"),
    ("  rows: 8\n", f"  rows: {2**53 + 1}\n", f"compute.rows: {2**53 + 1} is too large"),
    ("  rows: 8\n", f"  rows: {2**20 + 1}\n", f"compute.rows: must be <= {2**20}, got {2**20 + 1}"),
    ("  m: 4\n", "  m: 65\n", "sparsity.m: must be <= 64, got 65"),
    ("    capacity: 64 KiB\n  - name: filter", "    capacity: 1e300 B\n  - name: filter", "capacity: '1e300 B' is too large"),
    ("  rows: 8\n", "  ? {a: 1}\n  : 8\n", "line 5: compute: a key is a mapping; keys are names"),
    ("  rows: 8\n", "  ? [a, b]\n  : 8\n", "line 5: compute: a key is a list; keys are names"),
    ("  rows: 8\n", "  rows: 8\n  rows: 8\n", "line 6: invalid YAML (duplicate key 'rows')"),
    ("  rows: 8\n", "  rows: !!binary AAAA\n", "compute.rows: YAML tag 'tag:yaml.org,2002:binary' is not used"),
    ("  rows: 8\n", "  rows: !!python/object:os.system x\n", "is not used in hardware files"),
    ("name: tiny_nm\n", "name: " + "x" * 5000 + "\n", "line 1: name: a value of 5000 characters (at most 1024)"),
])
def test_hostile_values(tmp_path, old, new, expect):
    assert expect in _err(tmp_path, _variant(old, new))


def test_m_64_is_accepted(tmp_path):
    p = tmp_path / "m64.yaml"
    p.write_text(_variant("  m: 4\n", "  m: 64\n"))
    assert load_hw(p).sparsity.m == 64


def test_alias_bomb_refused_at_first_alias_in_bounded_memory(tmp_path):
    # "billion laughs": 9 levels of 9 aliases expand to 9**9 strings; today's loader built them and
    # repr()'d the result into the error (83 s, 3.5 GB)
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 1000
    tracemalloc.start()
    try:
        msg = _err(tmp_path, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "line 1: anchor &a refused" in msg
    assert peak < 20 * 2**20, peak
    # an alias without an anchor (undefined) and a lone anchor: also refused by name
    assert "alias *b refused" in _err(tmp_path, "a: [1]\nc: *b\n")
    assert "anchor &x refused" in _err(tmp_path, _variant("  rows: 8\n", "  rows: &x 8\n"))
    assert "anchor" in _err(tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n")  # merge keys need aliases


def test_deep_nesting(tmp_path):
    for text in ("[" * 10_000 + "]" * 10_000, "a: " + "{a: " * 10_000 + "1" + "}" * 10_000,
                 "".join("  " * i + "a:\n" for i in range(400))):
        assert f"nested more than {MAX_DEPTH} levels deep" in _err(tmp_path, text)


def test_many_values_and_many_levels(tmp_path):
    # 2.6 M memory levels: from a file the read limit refuses them before parsing ...
    huge = BASE + "  - name: l\n" * 2_600_000
    assert f"larger than {MAX_HW_FILE_BYTES} bytes" in _err(tmp_path, huge)
    # ... under it the value count limit does ...
    many = BASE + "".join(f"  - {{name: l{i}}}\n" for i in range(MAX_NODES))
    assert len(many) < MAX_HW_FILE_BYTES and f"more than {MAX_NODES} values" in _err(tmp_path, many)
    # ... and from Python, parse_hw refuses them without a quadratic duplicate-name scan
    d = parse_yaml_text(BASE, "b")
    d["memory"] = d["memory"][:3] + [{"name": "l"}] * 2_600_000 + d["memory"][3:]
    with pytest.raises(HardwareConfigError, match="memory: 2600004 levels"):
        parse_hw(d, "big")


def test_huge_and_non_utf8_files(tmp_path):
    p = tmp_path / "sparse.yaml"
    with open(p, "wb") as f:  # a 1 GiB sparse file: only MAX_HW_FILE_BYTES + 1 bytes are read
        f.truncate(2**30)
    with pytest.raises(HardwareConfigError, match=f"larger than {MAX_HW_FILE_BYTES} bytes"):
        load_hw(p)
    assert "not UTF-8" in _err(tmp_path, b"name: caf\xe9\n" + BASE.encode())
    assert "invalid YAML" in _err(tmp_path, b"name: x\x00\n")  # a control character PyYAML refuses
    assert "invalid YAML" in _err(tmp_path, "name: [unclosed\n")


def test_messages_never_repr_a_whole_value():
    # from Python (no YAML limits) a huge value is still cut in the message
    d = parse_yaml_text(BASE, "b")
    for key, value in (("name", list(range(10**6))), ("storage_format", "z" * 10**6)):
        bad = dict(d, **{key: value})
        with pytest.raises(HardwareConfigError) as ei:
            parse_hw(bad, "py")
        assert len(str(ei.value)) < 300 and key in str(ei.value)
    comp = dict(d["compute"], rows=[1] * 10**6)
    with pytest.raises(HardwareConfigError, match=r"compute.rows: expected an integer, got a list of 1000000 items"):
        parse_hw(dict(d, compute=comp), "py")


def test_units_limits_direct():
    with pytest.raises(ValueError, match="is not finite"):
        units.parse_frequency(float("inf"))
    with pytest.raises(ValueError, match="too large"):
        units.parse_size(10**400)
    assert units.parse_frequency("2 kHz", allow_extreme=True) == 2e3
    with pytest.raises(ValueError, match="below 1 Hz"):
        units.parse_frequency("0.5 Hz", allow_extreme=True)
    assert units.show("x" * 100).endswith("... (100 characters)")


# ------------------------------------------------------------------ shipped machines by name
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "hwconfigs").glob("*.yaml"))


def test_shipped_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert catalog.shipped_names() == SHIPPED and "a100_24" in SHIPPED
    assert catalog.resolve("a100_24") == catalog.resolve("a100_24.yaml") == ROOT / "hwconfigs" / "a100_24.yaml"
    assert load_hw("a100_24").name == "a100_24"
    # a path with a directory part is a path; a local file of that name wins over the shipped one
    assert catalog.resolve("hwconfigs/a100_24.yaml") == Path("hwconfigs/a100_24.yaml")
    (tmp_path / "a100_24.yaml").write_text(BASE)
    assert catalog.resolve("a100_24.yaml") == Path("a100_24.yaml") and load_hw("a100_24.yaml").name == "tiny_nm"
    with pytest.raises(HardwareConfigError) as ei:
        load_hw("a100")
    assert str(ei.value) == (f"a100: no such hardware file (shipped machines: {', '.join(SHIPPED)}; "
                             "see 'accelsim hw list')")


def _cli(argv, capsys) -> tuple[int, str, str]:
    from accelsim.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors exit from parse_args
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_hw_list(capsys):
    rc, out, err = _cli(["hw", "list"], capsys)
    lines = out.splitlines()
    assert rc == 0 and err == "" and len(lines) == 1 + len(SHIPPED)
    assert lines[0].split()[:4] == ["name", "family", "clock", "dense"]
    assert [line.split()[0] for line in lines[1:]] == SHIPPED
    a100 = next(line for line in lines if line.startswith("a100_24 "))
    # 108 SMs x 4 tensor cores x 256 FMA/clk x 2 x 1.41 GHz = 311.9 TFLOP/s (docs/sources.md "NVIDIA A100")
    assert a100.split()[1:6] == ["gpu", "1.41", "GHz", "312", "TFLOP/s"] and "2:4 on a" in a100
    tpu = next(line for line in lines if line.startswith("tpu_v1_like "))
    # 256 x 256 int8 MACs x 2 x 700 MHz = 91.75 TOP/s (Jouppi et al. 2017 quote 92 TOPS)
    assert "700 MHz" in tpu and "91.8 TOP/s" in tpu and " dense " in tpu


def test_cli_hw_given_twice_is_one_line(capsys):
    for argv in (["run", "t.npz", "--hw", "a100_24", "--hw", "tensordash"],
                 ["plot", "speedup", "t.npz", "--hw", "a100_24", "--hw", "tensordash", "-o", "s.png"]):
        rc, out, err = _cli(argv, capsys)
        assert rc == 2 and out == "" and err.count("\n") == 1
        assert err.startswith("accelsim: error: --hw given twice") and "'accelsim compare' takes several" in err


def test_cli_unknown_machine_lists_shipped(capsys):
    rc, out, err = _cli(["run", ROOT / "traces" / "transformer_block_dense.npz", "--hw", "a100", "-q"], capsys)
    assert rc == 2 and err == (f"accelsim: error: a100: no such hardware file (shipped machines: "
                               f"{', '.join(SHIPPED)}; see 'accelsim hw list')\n")


@pytest.mark.slow
def test_wheel_ships_the_hardware_files(tmp_path):
    # the setup.py package-dir mapping: hwconfigs/*.yaml install as accelsim/hwconfigs/*.yaml
    import importlib.util
    import subprocess
    import sys
    import zipfile

    import setuptools

    # offline build with this environment's setuptools (>= 70.1 has bdist_wheel; older needs `wheel`)
    if (tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1)
            and importlib.util.find_spec("wheel") is None):
        pytest.skip(f"setuptools {setuptools.__version__} without the wheel package cannot build a wheel offline")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("accelsim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"accelsim/hwconfigs/{n}.yaml" for n in SHIPPED} <= names
    assert "accelsim/hw/catalog.py" in names


def test_unknown_keys_are_cut_in_messages():
    d = parse_yaml_text(BASE, "b")
    for k in ("k" * 10**6, 10**5000):
        with pytest.raises(HardwareConfigError, match="unknown key") as ei:
            parse_hw(dict(d, **{"compute": dict(d["compute"], **{k: 1})}) if isinstance(k, str)
                     else {**d, "compute": {**d["compute"], k: 1}}, "py")
        assert len(str(ei.value)) < 300
