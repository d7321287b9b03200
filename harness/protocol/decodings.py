"""The protocol's decodings: how a generative model's K-item list is read out of it (docs/decoding.md, "Protocol
decodings").

A decoding is part of the protocol, like K: it is chosen per run (`--decoding`), recorded in every record
(`protocol.params.decoding`), kept in a results folder of its own, and records under two decodings are never
compared in one significance test or one leaderboard table. The trained model does not depend on it (training and
its validation always use the submission's own settings), so a second decoding reuses the finished training.

A model that scores items (popularity, BM25, SASRec, ...) ranks K distinct items under either decoding; only a
generative adapter reads `Adapter.decoding`.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.errors import HarnessError

DEFAULT = "diverse-beam"
DECODINGS: dict[str, str] = {
    "diverse-beam": "the paper's: diverse (group) beam search with K beams in K / 2 groups and diversity penalty 0.25, "
                    "the first occurrence of each item kept; a list can hold fewer than K distinct items",
    "distinct": "K distinct items: plain constrained beam search with K beams (one group, no diversity penalty); with "
                "atomic IDs, the K items most probable as the first token, ordered by log p(item) + log p(EOS | item)",
}


def check_decoding(name: str, where: str = "--decoding") -> str:
    if name not in DECODINGS:
        raise HarnessError(f"{where}: unknown decoding {name!r}; allowed: {', '.join(DECODINGS)}")
    return name


def params_decoding(params: Mapping[str, Any]) -> str:
    """The decoding a record's protocol.params declare; records written before decodings were declared (schema 1.0)
    used the paper's. The one statement of that rule: ResultRecord.params.decoding applies it."""
    return params.get("decoding", DEFAULT)


def folder_name(submission: str, decoding: str) -> str:
    """A submission's results folder name under a decoding: its name for the paper's, `name@distinct` otherwise, so
    the two never overwrite each other and a reference is always looked up under the run's own decoding."""
    return submission if decoding == DEFAULT else f"{submission}@{decoding}"
