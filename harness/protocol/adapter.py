"""The adapter interface every submission implements (after lm-evaluation-harness's `LM`).

The harness owns batching, targets and metrics; an adapter only learns from a TrainView and ranks items.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING
from harness.protocol.params import parse_params


class Adapter(abc.ABC):
    """Subclass this; the runner constructs it once per (dataset, seed) unit.

    - `params`: the submission config's [params] table, as given.
    - `seed`: the unit's seed; seed every random generator you use from it.
    - `workdir`: a private, persistent folder for this unit (checkpoints, caches); it survives an
      interrupted run, so training can resume from it.
    - `tasks`: the tasks this submission serves (from its config).
    - `submission_dir`: the submission's folder, for files its config names (e.g. a DeepSpeed JSON).

    `decoding` is the run's protocol decoding (harness.protocol.decodings), set by the runner after construction and
    before `fit`. Only a generative adapter reads it, in `retrieve`: "distinct" asks for K distinct items, the
    default "diverse-beam" for the paper's diverse beam search. It must not change training (a second decoding
    reuses the finished training in `workdir`). An adapter that scores items ranks K distinct items either way.
    """

    decoding: str = DEFAULT_DECODING
    # The dataclass of this adapter's [params] (harness.protocol.params): declare it and every key, type and range is
    # checked before anything trains, unknown keys being errors. Without it [params] reaches the adapter unchecked.
    params_class: ClassVar[type | None] = None

    @classmethod
    def check_config(cls, params: Mapping[str, Any], *, tasks: frozenset[Task], submission_dir: Path) -> None:
        """Called by the runner before any unit trains: HarnessError, naming the config file and the key, for what
        the adapter cannot run with. The default parses `params_class`; an adapter whose checks need more overrides."""
        if cls.params_class is not None:
            parse_params(cls.params_class, params, where=str(Path(submission_dir) / "config.toml"))

    def __init__(
        self,
        *,
        params: Mapping[str, Any],
        seed: int,
        workdir: Path,
        tasks: frozenset[Task],
        submission_dir: Path,
    ):
        self.params = dict(params)
        self.seed = seed
        self.workdir = workdir
        self.tasks = tasks
        self.submission_dir = submission_dir

    @abc.abstractmethod
    def fit(self, train: TrainView) -> None:
        """Learn from the training view; validation examples in it may be used for early stopping."""

    @abc.abstractmethod
    def retrieve(
        self, task: Task, requests: RecExamples | SearchExamples, k: int
    ) -> Sequence[np.ndarray] | np.ndarray:
        """Rank at most k distinct catalogue item ids for each request, best first.

        Return one int array per request, or an int array [n, k] padded with -1.
        """

    def describe(self) -> dict[str, Any]:
        """Extra facts for the result record (backbone, resolved hyperparameters, library versions)."""
        return {}

    def item_embeddings(self) -> np.ndarray | None:
        """Optional, called once after `fit`: the learned vector of every catalogue item, a float array
        [n_items, dim] whose row i is item index i (a generative model's ID-token embeddings, a sequential
        model's item table). The runner stores it beside the unit's rankings (`item_embeddings.npy`) for the
        paper's projections (Figures 1 and 3, `python -m harness experiment projection`). None: the adapter
        has no such vectors."""
        return None

    def initial_item_embeddings(self) -> np.ndarray | None:
        """Optional, called once after `item_embeddings` when that gave vectors: the same rows before training
        (e.g. the random initialisation of new ID tokens), same shape. Stored as `item_embeddings_initial.npy`, so
        the projection can look at what training changed: a model trained from scratch moves its ID embeddings by
        a few percent of their norm, and their random start hides any learned structure (docs/experiments.md)."""
        return None
