"""``python -m bench.harness <scenario> ...``: see ``bench/harness/run.py``."""

from bench.harness.run import main

raise SystemExit(main())
