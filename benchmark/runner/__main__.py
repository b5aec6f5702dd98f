"""`python -m benchmark.runner CELL_DIR [--overwrite ...]`: run one cell (`run_cell.main`), as torchrun's workers do.

The entry point is the package, not `-m benchmark.runner.run_cell`: the package imports `run_cell`, so running that
module as `__main__` would load it twice (runpy warns; its module state would exist in two copies)."""

import sys

from benchmark.runner.run_cell import main

sys.exit(main())
