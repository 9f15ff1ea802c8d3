"""`python -m bench`: the whole benchmark (see `bench.run`)."""

from bench.run import main

raise SystemExit(main())
