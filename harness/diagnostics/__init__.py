"""The paper's §7 diagnostics of a joint model against its task-specific reference, and their figures.

- `compute.compute_diagnostics`: the one entry point the runner calls (H1 Table 6, H2 Table 7, Table 8);
- `h1`, `h2`, `redundancy`: the pure functions behind each table, definitions in their docstrings;
- `pairs`: item-pair co-occurrence counts over training data, vectorised;
- `figures`: item-embedding projections (Figures 1, 3), sweep and cap plots (Figures 2, 4), as SVG.

Nothing here imports matplotlib or scikit-learn until a figure is drawn.
"""

from harness.diagnostics.compute import DIAGNOSTICS_VERSION, TrainingCooccurrence, compute_diagnostics

__all__ = ["DIAGNOSTICS_VERSION", "TrainingCooccurrence", "compute_diagnostics"]
