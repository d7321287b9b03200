"""The generative T5 adapter's [params], typed (harness.protocol.params checks keys and types), with the settings
for one dataset (`[params.by_dataset.NAME]`) resolved by `for_dataset`. Everything here is recorded in the result
record; see docs/generative.md for what each setting does and why the shipped configs set it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from harness.data.spec import DatasetSpec
from harness.data.views import TASKS
from harness.errors import HarnessError
from harness.protocol.params import checked_value, parse_params


ITEM_ID_SCHEMES = ("atomic", "semantic")


@dataclass(frozen=True)
class T5Params:
    """The adapter's [params], typed. Everything here is recorded in the result record."""

    backbone: str = "t5-offline-small"  # a preset of harness.generative.backbones
    backbone_path: str | None = None  # local folder of a pretrained backbone (flan-t5-base)
    allow_download: bool = False  # let transformers fetch a pretrained backbone from the Hub
    model: dict = field(default_factory=dict)  # T5Config overrides for offline presets (+ tokenizer_vocab_size)
    # How items are named: "atomic" (one new token per item, the paper) or "semantic" (RQ-k-means codes of item
    # vectors, harness.generative.semantic_ids), configured by semantic_ids = { source = "content", levels = 2, ... }
    item_ids: str = "atomic"
    semantic_ids: dict = field(default_factory=dict)
    deepspeed_config: str = "deepspeed.json"  # relative to the submission folder
    epochs: int = 5  # paper
    learning_rate: float = 0.002  # paper
    batch_size: int = 128  # paper; the global batch (DeepSpeed's train_batch_size follows it)
    weight_decay: float = 0.01  # paper
    lr_schedule: str = "linear"  # "linear" | "constant"
    max_history: int = 0  # last N history items in a rec input; 0 = whole history (paper)
    max_source_tokens: int = 512  # input length cap in tokens (rec keeps the most recent end)
    # Append EOS to every encoder input (T5's convention, as the paper's flan-t5-base saw it). A decoder trained from
    # scratch can attend to that EOS, the same in every input, and learn popularity only (docs/generative.md).
    source_eos: bool = True
    cap_per_item: dict = field(default_factory=dict)  # {task: N}: at most N training instances per target item
    diversity_penalty: float = 0.25  # paper
    num_beams: int | None = None  # None: K
    num_beam_groups: int | None = None  # None: K / 2 (paper)
    length_penalty: float = 1.0
    eval_batch_size: int = 64  # requests decoded at once
    valid_max_examples: int = 256  # validation examples decoded per task per epoch (seeded sample)
    valid_k: int | None = None  # cutoff of validation recall; None: the dataset's headline K
    select_best: bool = True  # keep the best validation epoch's weights (else the last epoch's)
    keep_all_checkpoints: bool = False  # else only the last and the best epoch's checkpoints stay on disk
    progress: bool = True  # tqdm bars
    threads: int = 0  # torch CPU threads (process-wide); 0 keeps torch's default. 1 on a shared machine
    # {dataset: {key: value}}: settings for one dataset (its base name, e.g. "ml-small" or "sim2", or a full
    # canonical name such as "sim2:q_match=0.5", which wins), over the ones above. Resolved by for_dataset().
    by_dataset: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, params: Mapping[str, Any], where: str) -> "T5Params":
        out = cls._parse(params, where, "params")
        for dataset, overrides in out.by_dataset.items():
            key = f"params.by_dataset.{dataset}"
            try:
                DatasetSpec.parse(dataset)
            except HarnessError as exc:
                raise HarnessError(f"{where}: {key}: {exc}") from exc
            if not isinstance(overrides, dict):
                raise HarnessError(f"{where}: {key} must be a table of [params] keys, got {overrides!r}")
            if "by_dataset" in overrides:
                raise HarnessError(f"{where}: {key}.by_dataset: settings for a dataset cannot nest")
            cls._parse({**_plain(params), **overrides}, where, key)  # each dataset's resolved settings are valid
        return out

    @classmethod
    def _parse(cls, params: Mapping[str, Any], where: str, prefix: str) -> "T5Params":
        out = parse_params(cls, params, where=where, prefix=prefix)  # keys and types, as every adapter's
        out._check_ranges(where, prefix)
        return out

    def for_dataset(self, dataset: str) -> "T5Params":
        """These settings with `by_dataset`'s overrides for `dataset` applied (the canonical name's over the base
        name's), and `by_dataset` itself emptied: what one unit trains with, records and hashes."""
        spec = DatasetSpec.parse(dataset)
        overrides = {**self.by_dataset.get(spec.name, {}), **self.by_dataset.get(str(spec), {})}
        return replace(self, by_dataset={}, **_checked_params(overrides, dataset, "params.by_dataset"))

    def _check_ranges(self, where: str, prefix: str = "params") -> None:
        def require(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise HarnessError(f"{where}: {prefix}.{key} = {getattr(self, key)!r}; {what}")

        require(self.epochs >= 1, "epochs", "give an integer >= 1")
        require(self.learning_rate > 0, "learning_rate", "give a number > 0")
        require(self.batch_size >= 1, "batch_size", "give an integer >= 1")
        require(self.weight_decay >= 0, "weight_decay", "give a number >= 0")
        require(self.lr_schedule in ("linear", "constant"), "lr_schedule", "allowed: 'linear', 'constant'")
        require(self.max_history >= 0, "max_history", "give an integer >= 0 (0: whole history)")
        require(self.max_source_tokens >= 2, "max_source_tokens", "give an integer >= 2")
        require(self.diversity_penalty >= 0, "diversity_penalty", "give a number >= 0")
        require(self.eval_batch_size >= 1, "eval_batch_size", "give an integer >= 1")
        require(self.valid_max_examples >= 0, "valid_max_examples", "give an integer >= 0 (0: no validation)")
        require(self.threads >= 0, "threads", "give an integer >= 0 (0: torch's default)")
        require(self.valid_k is None or self.valid_k >= 2, "valid_k", "give an even integer >= 2")
        require(self.item_ids in ITEM_ID_SCHEMES, "item_ids", f"allowed: {', '.join(map(repr, ITEM_ID_SCHEMES))}")
        require(self.item_ids == "semantic" or not self.semantic_ids, "semantic_ids",
                "these settings are for item_ids = 'semantic' only")
        if self.item_ids == "semantic":
            from harness.generative.semantic_ids import check_settings

            check_settings(self.semantic_ids, f"{where}: {prefix}.semantic_ids")
        for task, cap in self.cap_per_item.items():
            if task not in TASKS:
                raise HarnessError(f"{where}: {prefix}.cap_per_item has the key {task!r}, not a task; allowed: "
                                   f"{', '.join(TASKS)}")
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise HarnessError(f"{where}: {prefix}.cap_per_item.{task} = {cap!r}; give an integer >= 1 (the most "
                                   f"training instances kept per target item)")

    def check_tasks(self, tasks: frozenset[str], where: str) -> None:
        """Settings that only make sense for the tasks the submission trains."""
        untrained = sorted(set(self.cap_per_item) - set(tasks))
        if untrained:
            raise HarnessError(f"{where}: params.cap_per_item caps {untrained}, but this submission trains only "
                               f"{sorted(tasks)}: remove the key(s) or add the task(s)")


def _checked_params(params: Mapping[str, Any], where: str, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(T5Params)
    return {name: checked_value(value, hints[name], where, f"{prefix}.{name}") for name, value in params.items()}


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "by_dataset"}
