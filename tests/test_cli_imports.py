"""What `accelsim` imports before it knows the command: building the parser loads no sub-command's
machinery (the sweep runner, the training loop and method dataclasses, numpy, YAML, plotting), and a
plain `run` on a GPU file loads none of what only other commands use. Each check runs in a fresh
interpreter (this process has imported everything already). The help text stays what it was."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# modules only some commands need: sweep runner/spec (sweep), training + method dataclasses
# (record), numpy/yaml/the simulator (commands that open a trace or a hardware file), plotting and
# tables (plot, sweep), the event-simulation oracle (simpy), numba and llvmlite (the kernels' JIT
# and their shipped machine code: sparse PE / systolic)
PARSER_FREE = ("accelsim.sweep.run", "accelsim.sweep.spec", "accelsim.training", "accelsim.sparsity.spec",
               "accelsim.report.compare", "accelsim.sim", "numpy", "yaml", "matplotlib", "pandas", "simpy",
               "numba", "llvmlite", "torch")
RUN_FREE = ("accelsim.sweep.run", "accelsim.sweep.spec", "accelsim.training", "accelsim.sparsity.spec",
            "accelsim.report.writers", "accelsim.report.plots", "accelsim.report.sweep_plots", "matplotlib",
            "pandas", "simpy", "numba", "llvmlite", "torch", "csv")


def _loaded(code: str, names: tuple[str, ...]) -> list[str]:
    check = f"; import sys; print(' '.join(m for m in {names!r} if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_building_the_parser_imports_no_subcommand_machinery():
    assert _loaded("import accelsim.cli as c; c.build_parser()", PARSER_FREE) == []
    # parsing a command other than record leaves record's flags unbuilt
    code = "import accelsim.cli as c; c.build_parser().parse_args(['inspect', 't.npz'])"
    assert _loaded(code, PARSER_FREE) == []


def test_a_plain_run_imports_only_what_it_uses():
    code = ("import io, contextlib; from accelsim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['run', 'traces/transformer_block_dense.npz', '--hw', 'a100_24', '-q']) == 0")
    assert _loaded(code, RUN_FREE) == []


def test_record_parser_is_built_on_use_with_every_flag():
    """`record`'s flags come from the parameter dataclasses; parsing a record command, its --help
    and its usage in an error all see them, and `accelsim --help` lists record as before."""
    from accelsim.cli import build_parser
    from accelsim.sparsity.spec import METHOD_SPECS, flag_name
    from accelsim.training import MODELS, TrainingParams

    flags = [flag_name(f) for cls in (TrainingParams, *(s.params for s in METHOD_SPECS.values()))
             for f in dataclasses.fields(cls)]
    parser = build_parser()
    rec = parser._subparsers._group_actions[0].choices["record"]
    text = rec.format_help()
    for flag in ["--model", "--method", "--output", *flags]:
        assert f"{flag} " in text or f"{flag}\n" in text, flag
    assert f"models:  {', '.join(MODELS)}\n" in text and "\nexamples:\n  accelsim record --model" in text
    assert "\ntraining:\n" in text and "\nmethod parameters (only those of --method):\n" in text
    # a fresh parser populated by parsing gives the same help
    other = build_parser()
    args = other.parse_args(["record", "--model", "m", "--method", "swat", "--sparsity", "0.5", "-o", "o.npz"])
    assert args.sparsity == 0.5 and args.steps == TrainingParams().steps
    assert other._subparsers._group_actions[0].choices["record"].format_help() == text
    # the top-level help lists record with its one-line help
    top = build_parser().format_help()
    assert "    record    train a built-in model with a sparse-training method" in top


def test_record_help_from_the_command_line():
    p = subprocess.run([sys.executable, "-m", "accelsim", "record", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith("usage: accelsim record [-h] --model MODEL --method METHOD -o FILE.npz")
    assert "--srste-lambda" in p.stdout and "--distribution" in p.stdout
