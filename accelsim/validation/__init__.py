"""The validation suite: accelsim against published and reference results (issue 5).

One module per case (case_*.py) returns a CaseReport of Checks; ``python -m accelsim.validation``
renders them into docs/validation.md, and tests/validation runs the same code as tests. Reference
data with its provenance lives in data/ (SCALE-Sim 3.0 cycle counts and its topologies, MIT).
"""
