"""The paper's analyses (§6, §7: Table 4, Figures 1 to 4) as experiments anyone can rerun.

    python -m harness experiment list
    python -m harness experiment run sim2 [--seeds 0 1 2] [--out experiments/sim2]

An experiment is a plan of ordinary runs (a submission on a dataset spec, through the same Runner as
`python -m harness run`), so its records are ordinary result records, its units resume like a run's, and its
summary (`experiment.json`, a table and SVG figures) is computed from those records alone. Layout of an
experiment folder:

    <out>/results/<dataset-slug>/<submission>/record.json ...   the runs
    <out>/figures/*.svg                                          the figures
    <out>/experiment.json                                        the summary the leaderboard shows
    <out>/table.md                                               the same table as Markdown

Modules: `context` (submissions, datasets, running), `sweeps` (SIM1/SIM2/SIM3), `cap` (Figure 4),
`projection` (Figures 1 and 3), `summary` (the experiment.json writer).
"""

from harness.experiments.registry import EXPERIMENTS, Experiment

__all__ = ["EXPERIMENTS", "Experiment"]
