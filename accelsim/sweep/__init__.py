"""Design-space sweeps (docs/sweeps.md): ``accelsim sweep SPEC.yaml -o results.parquet|.csv``."""

from accelsim.sweep.run import run_sweep
from accelsim.sweep.spec import SweepSpec, SweepSpecError, load_spec

__all__ = ["run_sweep", "load_spec", "SweepSpec", "SweepSpecError"]
