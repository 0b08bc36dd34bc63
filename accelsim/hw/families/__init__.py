"""The built-in hardware families: one declaration module each (accelsim/hw/family.py).

Adding a family: write its declaration module here (compute dataclass and parser, sparsity kinds,
memory roles, validation, cost module) and add it to the import below; that import is the one
registration (docs/architecture.md "Family registry").
"""

from accelsim.hw.families import gpu, sparse_pe, systolic  # noqa: F401  (order = registration order)
