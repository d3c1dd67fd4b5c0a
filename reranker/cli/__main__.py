"""``python -m reranker.cli ...`` (what provisioning and the benchmarks run in a subprocess)."""

from reranker.cli import main

raise SystemExit(main())
