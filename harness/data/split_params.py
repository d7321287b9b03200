"""The compiler's split parameters (`ml-small:split_seed=3,valid_frac=0.2`): taken out of the dataset name, checked,
and turned into exact counts. Separate from harness.data.compile so the up-to-date check (harness.data.manifest)
can compare them without importing the orchestration; the SQL stages (harness.data.stages) receive them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from harness.data.params import SPLIT_PARAMS
from harness.data.spec import DatasetSpec
from harness.errors import HarnessError


# --------------------------------------------------------------------------------------------------
# Split parameters: taken out of the dataset name (`ml-small:split_seed=3`), the rest go to the source.


@dataclass(frozen=True)
class SplitParams:  # the defaults are also declared in harness.data.params.SPLIT_PARAMS (checked in a test)
    split_seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.1
    min_user_interactions: int = 5
    head_fraction: float = 0.01

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> tuple["SplitParams", dict[str, str]]:
        """(split params, the remaining source params). Values are validated with errors naming them."""
        source_params = spec.param_dict()
        values: dict[str, Any] = {}
        for param in SPLIT_PARAMS:
            if param.name in source_params:
                values[param.name] = param.parse(f"dataset {spec}", source_params.pop(param.name))
        params = cls(**values)
        params.validate(str(spec))
        return params, source_params

    def validate(self, where: str) -> None:
        if not (0 <= self.valid_frac < 1 and 0 <= self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            raise HarnessError(f"dataset {where}: valid_frac and test_frac must be in [0, 1) with a sum below 1")
        if self.min_user_interactions < 3:
            raise HarnessError(
                f"dataset {where}: min_user_interactions={self.min_user_interactions} must be at least 3 "
                "(validation predicts item t-1 from a non-empty history)"
            )
        if not 0 < self.head_fraction <= 1:
            raise HarnessError(f"dataset {where}: head_fraction={self.head_fraction} must be in (0, 1]")

    def eval_query_counts(self, n_unassigned: int) -> tuple[int, int]:
        """(n_valid, n_test) among queries the source left unassigned: round half up of frac * n, computed
        exactly (Fraction of the decimal text) so 0.1 * 35 is 3.5 -> 4 on every machine."""
        n_test = math.floor(Fraction(repr(self.test_frac)) * n_unassigned + Fraction(1, 2))
        n_valid = math.floor(Fraction(repr(self.valid_frac)) * n_unassigned + Fraction(1, 2))
        return min(n_valid, n_unassigned - n_test), n_test

    def head_size(self, n_items: int) -> int:
        return max(1, math.ceil(Fraction(repr(self.head_fraction)) * n_items))

