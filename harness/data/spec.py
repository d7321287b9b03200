"""Dataset names with parameters: `NAME` or `NAME:key=value,key=value` (e.g. `sim2:q_match=0.5`).

The canonical form sorts the keys, so the same dataset always has the same name, file and fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        name, _, rest = text.strip().partition(":")
        if not _NAME.match(name):
            raise HarnessError(f"dataset name {text!r}: {name!r} is not a valid dataset name")
        params: dict[str, str] = {}
        if rest:
            for part in rest.split(","):
                key, eq, value = part.partition("=")
                if not eq or not _KEY.match(key) or not _VALUE.match(value):
                    raise HarnessError(
                        f"dataset name {text!r}: parameter {part!r} is not of the form key=value"
                    )
                if key in params:
                    raise HarnessError(f"dataset name {text!r}: parameter {key!r} given twice")
                params[key] = value
        return cls(name, tuple(sorted(params.items())))

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params)

    @property
    def slug(self) -> str:
        """A file-name-safe form of the canonical name."""
        if not self.params:
            return self.name
        return self.name + "__" + "__".join(f"{k}-{v}" for k, v in self.params)

    def param_dict(self) -> dict[str, str]:
        return dict(self.params)
