"""The `accelsim` command line, driven through subprocesses exactly as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiny_trace

ROOT = Path(__file__).resolve().parents[1]
A100 = ROOT / "hwconfigs" / "a100_24.yaml"
TDASH = ROOT / "hwconfigs" / "tensordash.yaml"


def accelsim(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "accelsim", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def assert_user_error(p, *needles):
    """Exit 2, exactly one line on stderr, `accelsim: error: ...`, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("accelsim: error: "), p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    path = d / "tiny.npz"
    tiny_trace.build(path, steps=(0, 1))
    return path


def test_version_and_help():
    p = accelsim("--version")
    assert p.returncode == 0 and p.stdout.strip().startswith("accelsim 0.")
    p = accelsim("--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "compare" in p.stdout
    for cmd in ("run", "compare", "inspect", "plot", "record"):
        p = accelsim(cmd, "--help")
        assert p.returncode == 0, p.stderr
        assert "examples:" in p.stdout and f"accelsim {cmd}" in p.stdout


def test_run_table_json_csv(tiny, tmp_path):
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    p = accelsim("run", tiny, "--hw", A100, "--json", js, "--csv", cs, "--steps", "0")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"trace  {tiny}: tiny-convnet swat (sparsity=0.5) float32 batch 2 step 0 6 ops")
    assert f"hw     {A100}:" in out
    for col in ("dense MACs", "eff MACs", "dense cyc", "speedup", "util", "stalls"):
        assert col in out
    assert "backward-pass memory footprint, step 0" in out and "peak live" in out
    d = json.loads(js.read_text())
    assert len(d["ops"]) == 6 and d["meta"]["trace_header"]["model"] == "tiny-convnet"
    assert {o["dense_macs"] for o in d["ops"]} == {20736, 320}
    # footprint of step 0 (hand-worked in test_inspect): activations 1280 B, weights 1792 B dense
    assert d["footprint"]["totals"]["activation"]["dense"] == 1280
    assert d["footprint"]["totals"]["weight"]["dense"] == 1792
    rows = list(csv.DictReader(open(cs)))
    # every CSV column is documented in README.md's "Output columns" table, in order
    readme = (ROOT / "README.md").read_text().split("## Output columns", 1)[1].split("\n## ", 1)[0]
    documented = [c.strip(" `") for line in readme.splitlines() if line.startswith("| `")
                  for c in line.split("|")[1].split(",")]
    assert list(rows[0].keys()) == documented
    assert len(rows) == 6 and [r["pass"] for r in rows] == ["fwd", "fwd", "dgrad", "wgrad", "dgrad", "wgrad"]
    assert int(rows[0]["dense_macs"]) == 20736
    for r in rows:  # the totals line and the CSV agree op by op
        assert float(r["speedup"]) == pytest.approx(int(r["dense_cycles"]) / int(r["total_cycles"]))
    # the tensor-core dgrad of conv1 uses a weight that is not 2:4 along K: an honest fallback
    assert "fallbacks" in out
    # pandas reads both files as written, and the JSON ops carry the CSV's column names
    pd = pytest.importorskip("pandas")
    dc = pd.read_csv(cs)
    dj = pd.DataFrame(json.load(open(js))["ops"])
    assert dc["pass"].tolist() == dj["pass"].tolist() and dc["dense_macs"].tolist() == dj["dense_macs"].tolist()
    assert dc["dense_macs"].iloc[0] == 20736 and (dc["utilisation"] <= 1).all()
    assert pd.DataFrame(json.load(open(js))["totals"]).loc["ops", "all"] == 6


def test_run_quiet_and_format(tiny):
    p = accelsim("run", tiny, "--hw", A100, "--quiet", "--format", "bitmap")
    assert p.returncode == 0, p.stderr
    assert "eff MACs" in p.stdout and "shape" not in p.stdout  # totals only, no per-op table
    assert "format bitmap" in p.stdout


def test_compare(tiny, tmp_path):
    js = tmp_path / "c.json"
    p = accelsim("compare", tiny, "--hw", A100, "--hw", TDASH, "--json", js)
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("all")]
    assert len(lines) == 2 and lines[0].split()[-2] == "1.00x"     # the first machine vs itself
    d = json.loads(js.read_text())
    assert len(d["machines"]) == 2


def test_compare_two_files_of_one_machine_name_are_kept_apart(tiny, tmp_path):
    # two files declaring the same machine name: told apart by file name. The same file twice (by
    # any spelling) is a mistake since issue 12 (one line, exit 2), not two identical columns.
    js = tmp_path / "c.json"
    copy = tmp_path / "td_copy.yaml"
    copy.write_text(TDASH.read_text())
    p = accelsim("compare", tiny, "--hw", TDASH, "--hw", copy, "--json", js)
    assert p.returncode == 0, p.stderr
    names = [m["name"] for m in json.loads(js.read_text())["machines"]]
    assert names == ["tensordash (tensordash.yaml)", "tensordash (td_copy.yaml)"]
    assert_user_error(accelsim("compare", tiny, "--hw", TDASH, "--hw", "tensordash"), "given twice", "tensordash.yaml")


def test_inspect(tiny):
    p = accelsim("inspect", tiny, "--steps", "1")
    assert p.returncode == 0, p.stderr
    assert "2:4 along K" in p.stdout and "saved for backward" in p.stdout
    assert "20.7k" in p.stdout and "8x4x3x3" in p.stdout


@pytest.mark.parametrize("what,ext", [("memory", "png"), ("speedup", "svg"), ("timeline", "png")])
def test_plot(tiny, tmp_path, what, ext):
    out = tmp_path / f"fig.{ext}"
    args = ["plot", what, tiny, "-o", out] + ([] if what == "memory" else ["--hw", TDASH])
    p = accelsim(*args)
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert data[:4] == (b"\x89PNG" if ext == "png" else b"<?xm") and len(data) > 5000


def test_bad_input_one_line_exit_2(tiny, tmp_path):
    assert_user_error(accelsim("run", tmp_path / "missing.npz", "--hw", A100), "missing.npz", "not found")
    txt = tmp_path / "trace.txt"
    txt.write_text("hello")
    assert_user_error(accelsim("run", txt, "--hw", A100), "trace.txt", ".npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    assert_user_error(accelsim("inspect", corrupt), "corrupt.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(tiny.read_bytes()[:200])
    assert_user_error(accelsim("run", trunc, "--hw", A100), "trunc.npz")
    bad = tmp_path / "bad.yaml"
    bad.write_text(A100.read_text() + "\nturbo_mode: true\n")
    assert_user_error(accelsim("run", tiny, "--hw", bad), "bad.yaml", "turbo_mode")
    notyaml = tmp_path / "broken.yaml"
    notyaml.write_text("name: [unclosed\n")
    assert_user_error(accelsim("run", tiny, "--hw", notyaml), "broken.yaml")
    assert_user_error(accelsim("run", tiny, "--hw", A100, "--csv", tmp_path / "x.xlsx"), ".csv")
    assert_user_error(accelsim("run", tiny, "--hw", A100, "--steps", "7"), "step(s) 7")
    assert_user_error(accelsim("run", tiny, "--hw", A100, "--bogus"), "--bogus")
    assert_user_error(accelsim("run", tiny), "--hw")
    assert_user_error(accelsim("frobnicate"), "frobnicate")
    assert_user_error(accelsim("compare", tiny, "--hw", A100), "two")
    assert_user_error(accelsim("plot", "speedup", tiny, "-o", tmp_path / "s.png"), "--hw")
    assert_user_error(accelsim("plot", "memory", tiny, "-o", tmp_path / "s.txt"), ".png")
    assert_user_error(accelsim("inspect", tiny, "--nm", "5:4"), "N:M")
    assert_user_error(accelsim("record", "--model", "resnet18-cifar", "--method", "swat", "-o", tmp_path / "x.txt"),
                      ".npz")
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.torch
def test_record_bad_model_and_real_recording(tmp_path):
    pytest.importorskip("torch")
    assert_user_error(accelsim("record", "--model", "no-such-net", "--method", "swat", "-o", tmp_path / "x.npz"),
                      "no-such-net")
    out = tmp_path / "rec.npz"
    p = accelsim("record", "--model", "resnet18-cifar", "--method", "swat", "--sparsity", "0.8", "--batch", "2",
                 "--warmup", "1", "--steps", "1", "-o", out, timeout=600)
    assert p.returncode == 0, p.stderr
    assert out.exists() and f"wrote {out}" in p.stdout
    p = accelsim("inspect", out)
    assert p.returncode == 0 and "conv2d" in p.stdout and "wgrad" in p.stdout


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    cmd = "pip install torch==2.13.0 && pip install -e '.[record,test]' && python -m pytest -q"
    assert f"```bash\n{cmd}\n```" in readme
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci == ["set -euo pipefail", cmd]
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_readme_first_command_runs_on_a_shipped_trace():
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("pip install torch==2.13.0 && pip install -e '.[record]'"))
    cmd = line.split(" && ")[-1].split()
    assert cmd[:2] == ["accelsim", "run"]
    assert (ROOT / cmd[2]).is_file() and (ROOT / cmd[4]).is_file()
    p = accelsim(*cmd[1:])
    assert p.returncode == 0, p.stderr
    assert "backward-pass memory footprint" in p.stdout and "Traceback" not in p.stderr


def test_help_examples_name_shipped_files():
    import re

    text = (ROOT / "accelsim" / "cli.py").read_text()
    paths = sorted(set(re.findall(r"(?:traces|hwconfigs)/[\w.\-]+\.(?:npz|yaml)", text)))
    assert paths
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing


def test_record_flags_are_derived_from_the_parameter_dataclasses():
    import dataclasses

    from accelsim.cli import build_parser
    from accelsim.sparsity.spec import METHOD_SPECS, flag_name
    from accelsim.training import TrainingParams

    parser = build_parser()
    # record's flags are added on first use (cli._Parser populate): populated() adds them now
    rec = parser._subparsers._group_actions[0].choices["record"].populated()
    flags = {o: a.dest for a in rec._actions for o in a.option_strings}
    classes = [TrainingParams, *(s.params for s in METHOD_SPECS.values())]
    for cls in classes:                       # one flag per field, named after it, to the same keyword
        for f in dataclasses.fields(cls):
            assert flags[flag_name(f)] == f.name
    args = parser.parse_args(["record", "--model", "m", "--method", "x", "-o", "o.npz"])
    # training flags default to the dataclass's defaults; method flags are absent unless given
    assert {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingParams)} == \
        dataclasses.asdict(TrainingParams())
    assert not any(hasattr(args, f.name) for s in METHOD_SPECS.values() for f in dataclasses.fields(s.params))
    args = parser.parse_args(["record", "--model", "m", "--method", "x", "-o", "o.npz", "--n", "1",
                              "--no-first-layer-dense"])
    assert (args.n, args.first_layer_dense) == (1, False)


# ------------------------------------------------------------------------------------------------
# Bad input, in process (fast): every case is one `accelsim: error:` line, exit 2, and no output file
# (not even the good one of a --json/--csv pair) is left behind.
# ------------------------------------------------------------------------------------------------

def _rewrite_trace(src, dst, header_fn=None, mask_fn=None):
    """Copy a trace zip member by member, editing the JSON header and/or a mask array."""
    import io
    import zipfile

    import numpy as np

    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        for name in zi.namelist():
            data = zi.read(name)
            if name == "header.npy" and header_fn is not None:
                h = json.loads(bytes(np.load(io.BytesIO(data))).decode())
                header_fn(h)
                buf = io.BytesIO()
                np.save(buf, np.frombuffer(json.dumps(h).encode(), np.uint8))
                data = buf.getvalue()
            if name.startswith("masks/") and mask_fn is not None:
                buf = io.BytesIO()
                np.save(buf, mask_fn(name, np.load(io.BytesIO(data))))
                data = buf.getvalue()
            zo.writestr(name, data)
    return dst


def _bad_traces(tiny, d):
    import numpy as np

    raw = tiny.read_bytes()
    out = {}
    (d / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    out["trunc.npz"] = "truncated or corrupt"
    flip = bytearray(raw)
    flip[len(flip) // 2] ^= 0xFF  # inside a (compressed) mask member: CRC or inflate fails
    (d / "flip.npz").write_bytes(bytes(flip))
    out["flip.npz"] = "flip.npz"
    np.savez(d / "other.npz", x=np.arange(3))
    out["other.npz"] = "not a trace file"
    _rewrite_trace(tiny, d / "v3.npz", header_fn=lambda h: h.update(version=3))
    out["v3.npz"] = "trace version 3 is not supported"

    def grow(h):
        h["tensors"][0]["shape"][0] += 1
    _rewrite_trace(tiny, d / "shape.npz", header_fn=grow)
    out["shape.npz"] = "shape.npz"
    _rewrite_trace(tiny, d / "short.npz", mask_fn=lambda n, a: a[:-1] if n == "masks/0.npy" else a)
    out["short.npz"] = "mask of tensor 0 has"

    def flipbit(n, a):
        a = a.copy()
        if n == "masks/0.npy":
            a[0] ^= 1
        return a
    _rewrite_trace(tiny, d / "bits.npz", mask_fn=flipbit)
    out["bits.npz"] = "set bits but the header says nnz="
    return out


def _bad_hw(d):
    import yaml

    base = yaml.safe_load((ROOT / "hwconfigs" / "systolic_128_nm.yaml").read_text())
    out = {}

    def variant(name, fn, needle):
        y = json.loads(json.dumps(base))
        fn(y)
        (d / name).write_text(yaml.safe_dump(y))
        out[name] = needle
    variant("unknown.yaml", lambda y: y["compute"].update(turbo=3), "compute.turbo: unknown key")
    variant("ngtm.yaml", lambda y: y["sparsity"].update(n=6), "sparsity.n: N:M needs N < M, got 6:4")
    variant("zerobw.yaml", lambda y: y["memory"][-1].update(bandwidth="0 GB/s"), "bandwidth: must be > 0")
    variant("negsize.yaml", lambda y: y["memory"][0].update(capacity="-256 KiB"), "capacity: must be > 0")
    variant("units.yaml", lambda y: y["memory"][0].update(capacity="256 GHz"), "unknown unit 'ghz'")
    (d / "list.yaml").write_text("- a\n- b\n")
    out["list.yaml"] = "top level: expected a mapping"
    return out


def test_bad_input_in_process_one_line_and_no_partial_output(tiny, tmp_path, capsys):
    from accelsim.cli import main

    def check(argv, needle):
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("accelsim: error: "), (argv, err)
        assert needle in lines[0], (needle, lines[0])
        assert not list(outd.iterdir()), (argv, list(outd.iterdir()))  # nothing written, no temp files

    outd = tmp_path / "out"
    outd.mkdir()
    both = ["--json", outd / "r.json", "--csv", outd / "r.csv", "-q"]
    for name, needle in _bad_traces(tiny, tmp_path).items():
        check(["run", tmp_path / name, "--hw", A100, *both], needle)
        check(["inspect", tmp_path / name], needle)
    for name, needle in _bad_hw(tmp_path).items():
        check(["run", tiny, "--hw", tmp_path / name, *both], f"{name}: {needle}" if "top" in needle else needle)
    # --hw given a trace; an output in a missing directory (the other, valid output is not written)
    check(["run", tiny, "--hw", tiny, *both], "not a hardware file")
    check(["run", tiny, "--hw", A100, "-q", "--json", tmp_path / "nodir" / "r.json", "--csv", outd / "r.csv"],
          "does not exist")
    check(["run", tiny, "--hw", A100, "-q", "--csv", tmp_path / "nodir" / "r.csv", "--json", outd / "r.json"],
          "does not exist")
    check(["plot", "memory", tiny, "-o", tmp_path / "nodir" / "m.png", "-q"], "does not exist")
    # a trace named without its extension: the error says which file was probably meant
    check(["run", str(tiny)[:-len(".npz")], "--hw", A100, "-q"], f"did you mean {tiny}?")
    # an output path that is a directory fails before simulating, not after (review finding)
    (tmp_path / "d.csv").mkdir()
    check(["run", tiny, "--hw", A100, "-q", "--csv", tmp_path / "d.csv", "--json", outd / "r.json"],
          "is a directory")
    # N:M with N = M is not a pattern (hardware files refuse it too)
    check(["inspect", tiny, "--nm", "4:4"], "0 < N < M")
    check(["compare", tiny, "--hw", A100, "--hw", TDASH, "-q", "--json", tmp_path / "nodir" / "c.json"],
          "does not exist")


def test_trace_without_ops_is_one_line_error_not_a_crash(tmp_path, capsys):
    # QA finding: `plot speedup` on a trace with no ops raised KeyError 'all' (a traceback) and
    # `run` printed empty tables; simulating nothing is now a one-line error, inspect still works.
    from accelsim.cli import main
    from accelsim.trace.format import TraceWriter

    empty = tmp_path / "empty.npz"
    with TraceWriter(empty, {"steps": [0]}):
        pass
    for argv in (["run", empty, "--hw", A100, "-q"], ["compare", empty, "--hw", A100, "--hw", TDASH, "-q"],
                 ["plot", "speedup", empty, "--hw", A100, "-o", tmp_path / "s.png", "-q"],
                 ["plot", "timeline", empty, "--hw", A100, "-o", tmp_path / "t.png", "-q"]):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0] == f"accelsim: error: {empty}: no conv2d/matmul/bmm ops to simulate " \
                                           "(see `accelsim inspect`)"
    assert not list(tmp_path.glob("*.png"))
    assert main(["inspect", str(empty)]) == 0
    assert capsys.readouterr().out.startswith(f"trace  {empty}: 0 ops")


def test_json_meta_records_the_in_process_command(tiny, tmp_path):
    from accelsim.cli import main

    js = tmp_path / "m.json"
    assert main(["run", str(tiny), "--hw", str(A100), "-q", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["meta"]["command"] == f"accelsim run {tiny} --hw {A100} -q --json {js}"


# ------------------------------------------------------------------ hostile paths, streams, signals
def _popen(*args, stdout=subprocess.PIPE, **kw):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "accelsim", *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=stdout, stderr=subprocess.PIPE, **kw)


def test_stdout_full_or_closed_is_one_line_exit_2(tiny):
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "accelsim", "run", str(tiny), "--hw", str(A100), "-q"], cwd=ROOT,
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr == ("accelsim: error: cannot write the results to standard output: "
                                              "No space left on device\n")
    p = subprocess.run([sys.executable, "-m", "accelsim", "inspect", str(tiny)], cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=lambda: os.close(1))
    assert p.returncode == 2 and p.stderr == "accelsim: error: cannot write the results: standard output is closed\n"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"]])
def test_help_to_a_full_stdout_is_one_line_exit_2(argv):
    # argparse swallows the write error of --help/--version: this used to exit 0 having printed nothing
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "accelsim", *argv], cwd=ROOT, stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    assert p.returncode == 2 and p.stderr == ("accelsim: error: cannot write the results to standard output: "
                                              "No space left on device\n")


def test_broken_pipe_is_quiet(tiny):
    p = _popen("inspect", tiny)
    p.stdout.close()  # the reader went away (`accelsim inspect ... | head -0`)
    err = p.stderr.read()
    assert p.wait(timeout=300) == 0 and err == ""


def test_huge_steps_range_is_one_line_at_once(tiny):
    p = accelsim("run", tiny, "--hw", A100, "--steps", "0-100000000000", timeout=60)
    assert_user_error(p, "no ops for step(s) 2, 3, 4, 5, 6 and 99999999994 more (recorded steps: 0, 1)")
    p = accelsim("inspect", tiny, "--steps", "1-3,0-2", timeout=60)
    assert_user_error(p, "no ops for step(s) 2, 3 (recorded steps: 0, 1)")
    assert_user_error(accelsim("inspect", tiny, "--steps", "9" * 5000, timeout=60), "--steps '9999")
    assert accelsim("inspect", tiny, "--steps", "0-1,1", timeout=60).returncode == 0


def test_hostile_paths_are_one_line(tiny, tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    assert_user_error(accelsim("run", fifo, "--hw", A100, timeout=60), "pipe.npz: trace file is not a regular file")
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    assert_user_error(accelsim("run", tiny, "--hw", zero, timeout=60), "zero.yaml: hardware file is not a regular file")
    long = tmp_path / ("n" * 5000 + ".npz")
    for args in (("run", long, "--hw", A100), ("inspect", long), ("run", tiny, "--hw", A100, "--json", f"{long}.json"),
                 ("plot", "memory", tiny, "-o", f"{long}.png")):
        p = accelsim(*args, timeout=60)
        assert_user_error(p, "File name too long")
        assert len(p.stderr) < 400


def test_lone_surrogate_in_a_layer_name_prints_everywhere(tmp_path):
    from accelsim.trace.format import Operand, TraceWriter

    path = tmp_path / "s.npz"
    with TraceWriter(path, {"steps": [0]}) as w:
        a = w.add_tensor(np.ones((4, 8), bool), dtype="float32", role="activation", layer="fc\ud800")
        b = w.add_tensor(np.ones((8, 2), bool), dtype="float32", role="weight", layer="fc\ud800")
        w.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="fc\ud800", module_type="Linear", aten="aten.mm",
                 operands=[Operand("a", a), Operand("b", b)], out_shape=[4, 2], params={})
    js, cs = tmp_path / "o.json", tmp_path / "o.csv"
    for env in ({}, {"LC_ALL": "C", "PYTHONIOENCODING": ""}):  # UTF-8 and the C locale's surrogateescape
        p = subprocess.run([sys.executable, "-m", "accelsim", "run", str(path), "--hw", str(A100), "--json", str(js),
                            "--csv", str(cs)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONWARNINGS="ignore", **env))
        assert p.returncode == 0, p.stderr
        assert "fc\\ud800" in p.stdout and "Traceback" not in p.stderr
        assert json.loads(js.read_text())["ops"][0]["layer"] == "fc\ud800"
        assert "fc\\ud800" in cs.read_text()
        p = accelsim("inspect", path)
        assert p.returncode == 0 and "fc\\ud800" in p.stdout


def test_sigterm_while_the_json_is_written_keeps_the_old_file(tiny, tmp_path, monkeypatch, capsys):
    # A signal inside the atomic write (here: during fsync) must remove the temp file and leave the
    # old output as it was -- what Ctrl-C already did.
    import signal

    import accelsim.util.atomic as atomic
    from accelsim.cli import main

    js = tmp_path / "r.json"
    js.write_text("old")
    real = os.fsync

    def fsync_then_signal(fd):
        real(fd)
        os.kill(os.getpid(), signal.SIGTERM)
        real(fd)  # the handler runs at the next bytecode boundary, not after the write finished

    monkeypatch.setattr(atomic.os, "fsync", fsync_then_signal)
    old = signal.getsignal(signal.SIGTERM)
    assert main(["run", str(tiny), "--hw", str(A100), "-q", "--json", str(js)]) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is old  # handlers restored for an in-process caller
    assert capsys.readouterr().err.strip() == "accelsim: terminated by SIGTERM"
    assert js.read_text() == "old" and sorted(tmp_path.iterdir()) == [js]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_signal_during_run_json_leaves_no_temp_file(sig, tmp_path):
    import signal

    js = tmp_path / "r.json"
    js.write_text("old")
    # without -q the progress bar reports on stderr once the simulation has run 2 s: the signal is
    # sent then, while it simulates (the handlers are installed by then)
    p = _popen("run", ROOT / "traces" / "resnet50_imagenet_swat_u80.npz", "--hw", A100, "--json", js,
               stdout=subprocess.DEVNULL)  # a full stdout pipe would block it while we read stderr
    first = p.stderr.readline()
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=300)
    err = first + err
    assert "Traceback" not in err
    if p.returncode == 0:  # it finished first: the new file is complete
        assert first == "" or json.loads(js.read_text())["meta"]
    else:
        assert p.returncode == 128 + getattr(signal, sig), err
        assert err.splitlines()[-1] == f"accelsim: terminated by {sig}" and js.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [js]


@pytest.mark.torch
def test_sighup_during_record_leaves_no_temp_file_and_the_old_trace(tmp_path):
    import signal
    import time

    pytest.importorskip("torch")
    out = tmp_path / "t.npz"
    out.write_bytes(b"old trace")
    p = _popen("record", "--model", "transformer-block", "--method", "dense", "--warmup", "0", "--steps", "1000",
               "-q", "-o", out)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".t.npz.*.tmp")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".t.npz.*.tmp")), "the recording never started"
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGHUP and err.strip() == "accelsim: terminated by SIGHUP", err
    assert out.read_bytes() == b"old trace" and sorted(tmp_path.iterdir()) == [out]


@pytest.mark.torch
def test_full_disk_during_record_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import accelsim.trace.format as fmt
    from accelsim.cli import main

    pytest.importorskip("torch")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fmt.np.lib.format, "write_array", full)
    out = tmp_path / "t.npz"
    assert main(["record", "--model", "transformer-block", "--method", "dense", "--warmup", "0", "--steps", "1",
                 "-q", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"accelsim: error: cannot write trace {out}: No space left on device\n"
    assert not list(tmp_path.iterdir())


def test_unreadable_parent_directory_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    # chmod cannot lock root out, so the stat of a path under a parent without search permission is
    # made to fail as it does for other users (EACCES)
    from accelsim.cli import main

    locked = tmp_path / "locked"
    real = Path.stat

    def stat(self, *a, **k):
        if str(self).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "stat", stat)
    for argv, what in ([["inspect", str(locked / "t.npz")], "trace file"],
                       [["run", str(tiny), "--hw", str(A100), "--json", str(locked / "o.json")], "--json output"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"accelsim: error: {argv[-1]}: cannot open the {what}: Permission denied\n", err
