"""`python -m supervisor check|tree FILE`: see `supervisor._cli`."""

from supervisor._cli import main

raise SystemExit(main())
