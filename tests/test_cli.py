"""The `accelsim` command line, driven through subprocesses exactly as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert_user_error(accelsim("plot", "memory", tiny, "-o", tmp_path / "s.pdf"), ".png")
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


@pytest.mark.torch
def test_record_flags_map_one_to_one_onto_record_training():
    pytest.importorskip("torch")
    import inspect

    from accelsim.cli import RECORD_KWARGS, build_parser
    from accelsim.training import record_training

    params = [p for p in inspect.signature(record_training).parameters if p not in ("model", "method", "out",
                                                                                     "progress")]
    assert sorted(RECORD_KWARGS) == sorted(params)
    args = build_parser().parse_args(["record", "--model", "m", "--method", "x", "-o", "o.npz"])
    defaults = {p: inspect.signature(record_training).parameters[p].default for p in params}
    assert {k: getattr(args, k) for k in RECORD_KWARGS} == defaults   # the CLI's defaults are the API's
