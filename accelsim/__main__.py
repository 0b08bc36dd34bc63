"""`python -m accelsim` == the `accelsim` command."""

from accelsim.cli import main

raise SystemExit(main())
