"""What every experiment needs: its submissions (a joint one and its references), datasets built on demand,
and runs through the ordinary Runner into the experiment's own results folder (so they resume like runs)."""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.data.compile import build_dataset
from harness.data.spec import DatasetSpec, parse_written
from harness.data.store import CompiledDataset
from harness.errors import HarnessError
from harness.protocol.decodings import DECODINGS
from harness.protocol.submission import Submission, _config_hash, load_submission
from harness.records.provenance import results_folder
from harness.records.record import ResultRecord
from harness.runner import Runner

DEFAULT_SUBMISSIONS = Path("submissions")


@dataclass
class Context:
    out: Path  # the experiment folder
    submissions_dir: Path = DEFAULT_SUBMISSIONS
    joint: str = "joint_t5"  # the joint submission's folder name; its [references] name the others
    seeds: list[int] | None = None  # None: each submission's own seeds
    cache_dir: Path | None = None
    progress: bool = False
    decoding: str = "diverse-beam"  # the protocol's decoding for every run (harness.protocol.decodings)
    dataset_params: dict[str, str] = field(default_factory=dict)  # added to every dataset spec (e.g. test_queries)
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    @property
    def results(self) -> Path:
        return self.out / "results"

    # ---- submissions ----------------------------------------------------------------------------------
    def submission(self, name: str) -> Submission:
        folder = self.submissions_dir / name
        if not (folder / "config.toml").is_file():
            raise HarnessError(f"{folder}: no submission there (give --submissions DIR holding '{name}/config.toml')")
        return load_submission(folder)

    def joint_submission(self) -> Submission:
        joint = self.submission(self.joint)
        if not joint.references:
            raise HarnessError(
                f"{joint.folder / 'config.toml'}: the joint submission names no [references]; an experiment compares "
                "it with its task-specific references (e.g. rec = \"rec_t5\")"
            )
        return joint

    def reference(self, task: str) -> Submission:
        joint = self.joint_submission()
        if task not in joint.references:
            raise HarnessError(f"{joint.folder / 'config.toml'}: no reference for task {task!r} in [references]")
        return self.submission(joint.references[task])

    # ---- datasets -------------------------------------------------------------------------------------
    def dataset(self, spec: str) -> str:
        """The spec's canonical name, built (deterministically, into the dataset cache) if not yet compiled."""
        parsed = DatasetSpec.parse(spec)
        clash = sorted(set(parse_written(spec)[1]) & set(self.dataset_params))  # as written: a default is dropped
        if clash:
            raise HarnessError(f"--dataset-param {', '.join(clash)}: the experiment sets it itself in {spec}")
        name = str(DatasetSpec(parsed.name, tuple(sorted({**parsed.param_dict(), **self.dataset_params}.items()))))
        try:
            CompiledDataset.open(name, cache_dir=self.cache_dir).close()
        except HarnessError:
            self.log(f"[experiment] building dataset {name}")
            build_dataset(name, cache_dir=self.cache_dir)
        return name

    # ---- runs -----------------------------------------------------------------------------------------
    def run(self, submission: Submission, dataset: str) -> ResultRecord:
        """Run (or resume) one submission on one dataset; the record it left. A failed unit stops the experiment
        with its message: a summary over missing numbers would mislead."""
        runner = Runner(submission, out_dir=self.results, cache_dir=self.cache_dir, progress=self.progress,
                        log=self.log, decoding=self.decoding)
        (outcome,) = runner.run(datasets=[dataset], seeds=self.seeds)
        if outcome.failed:
            unit = outcome.failed[0]
            raise HarnessError(
                f"{submission.name} on {dataset}, seed {unit.seed} failed: {unit.error['type']}: "
                f"{unit.error['message']} (traceback in {outcome.folder / 'record.json'}; run the experiment "
                "again to retry: finished units are reused)"
            )
        return ResultRecord.read(self.record_folder(submission, dataset) / "record.json")

    def record_folder(self, submission: Submission, dataset: str) -> Path:
        return results_folder(self.results, dataset, submission.name, self.decoding)

    def record_path(self, submission: Submission, dataset: str) -> str:
        """The record's path relative to the experiment folder, as experiment.json names it."""
        return (self.record_folder(submission, dataset) / "record.json").relative_to(self.out).as_posix()


def variant(base: Submission, *, suffix: str, display_suffix: str, params: dict[str, Any],
            references: dict[str, str] | None = None) -> Submission:
    """A copy of `base` with extra [params] (e.g. a training cap), under its own name so its records, work folder and
    config hash never mix with the base's. The config in its records is the full effective config."""
    config = copy.deepcopy(base.config)
    config.setdefault("params", {}).update(params)
    config["submission"]["display_name"] = f"{base.display_name} {display_suffix}"
    if references is not None:
        config["references"] = dict(references)
    return dataclasses.replace(
        base,
        name=f"{base.name}-{suffix}",
        display_name=config["submission"]["display_name"],
        params=dict(config["params"]),
        references=dict(config.get("references", {})),
        config=config,
        config_hash=_config_hash(config),
    )


# ---- reading numbers back out of records -----------------------------------------------------------------
def metric_values(record: ResultRecord, task: str, metric: str) -> tuple[float | None, list[float]]:
    """(mean over seeds, the per-seed values in seed order) of one metric, e.g. ("rec", "R@10")."""
    value = record.metric(task, metric)
    if value is None:
        return None, []
    return value.mean, [value.per_seed[s] for s in sorted(value.per_seed) if value.per_seed[s] is not None]


def distinct_items(record: ResultRecord, task: str) -> float | None:
    """Mean distinct items per returned list (the record's `lists`, schema 1.1), None for older records."""
    lists = record.lists.get(task)
    return None if lists is None else lists.mean_distinct_items


def decoding_note(ctx: Context) -> str:
    return (f"Decoding: {ctx.decoding} ({DECODINGS[ctx.decoding]}). Every model of this experiment is decoded this "
            "way and tests compare only within it; 'Distinct' is the mean number of distinct items per list.")


def minimum_detectable_difference(test: dict, power: float = 0.8) -> float | None:
    """The smallest true difference the test would find with probability `power` at its α (two-sided, before Holm):
    (z_{1-α/2} + z_power) standard errors, the standard error read back from the test's confidence interval
    (ci_high - ci_low = 2 t_{1-α/2} se). It measures the instrument, not the effect: a difference below it that
    is not significant says little."""
    from scipy import stats

    low, high, alpha, n = test.get("ci_low"), test.get("ci_high"), test.get("alpha"), test.get("n")
    if low is None or high is None or not alpha or not n or n < 2 or high <= low:  # no variance: nothing to read
        return None
    se = (high - low) / 2 / stats.t.ppf(1 - alpha / 2, n - 1)
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def power_note(rows: list[dict], metric: str) -> str:
    by_sample: dict[str, list[float]] = {}
    for row in rows:
        if row.get("mde") is not None:
            where = f"{row['task']}, {row['sample']} sample" if "sample" in row else row["task"]
            by_sample.setdefault(where, []).append(row["mde"])
    if not by_sample:
        return "Power: no test to read it from."
    parts = [f"{where}: {min(v):.3f} to {max(v):.3f}" for where, v in by_sample.items()]
    return (f"Power: MDE is the smallest difference in {metric} each paired test detects with 80% power at α = 0.05 "
            f"(two-sided, before Holm; from the test's own standard error over its test queries). {'; '.join(parts)}. "
            "A non-significant difference smaller than the MDE is not evidence of no effect.")


def format_level(value: float) -> str:
    """0.25 -> '0.25', 1.0 -> '1': the spelling used in dataset specs, so a level always names one dataset."""
    return f"{value:g}"
