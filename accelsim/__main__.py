"""`python -m accelsim` == the `accelsim` command."""

import sys

try:  # Ctrl-C while the modules load (before main() handles it) exits quietly, as it does later
    from accelsim.cli import main
except KeyboardInterrupt:
    sys.stderr.write("\naccelsim: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
