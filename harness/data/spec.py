"""Dataset names with parameters: `NAME` or `NAME:key=value,key=value` (e.g. `sim2:q_match=0.5`).

Every spelling of the same parameters gives one canonical name, hence one file and one fingerprint: each value
is parsed to its typed value (the source's declared `params`, harness.data.params, and the compiler's
SPLIT_PARAMS) and printed in one form (`q_match=0.50` and `q_match=.5` are `q_match=0.5`), a value equal to its
default is left out (`sim2:q_match=1` is `sim2`), and the keys are sorted. Unknown parameters and bad values of a
registered source are errors naming them. A name the registry does not know (a hand-made source compiled with
`compile_dataset(..., source=...)`) keeps its own parameters as written, the split parameters made canonical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from harness.data.params import SPLIT_PARAMS, Param, unknown_parameters
from harness.data.sources import SOURCES
from harness.errors import HarnessError

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_SPLIT_BY_NAME = {p.name: p for p in SPLIT_PARAMS}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Constructed directly (DatasetSpec(name, params)) or through parse(): always canonical.
        object.__setattr__(self, "params", canonical_params(self.name, dict(self.params)))

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        name, params = parse_written(text)
        return cls(name, tuple(params.items()))

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


def parse_written(text: str) -> tuple[str, dict[str, str]]:
    """(name, {key: value as written}): the syntax of a dataset name, before anything is made canonical (a value
    equal to its default is still there, e.g. to tell whether a name sets a parameter at all)."""
    name, _, rest = text.strip().partition(":")
    if not _NAME.match(name):
        raise HarnessError(f"dataset name {text!r}: {name!r} is not a valid dataset name")
    params: dict[str, str] = {}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not _KEY.match(key) or not _VALUE.match(value):
                raise HarnessError(f"dataset name {text!r}: parameter {part!r} is not of the form key=value")
            if key in params:
                raise HarnessError(f"dataset name {text!r}: parameter {key!r} given twice")
            params[key] = value
    return name, params


def name_from_slug(slug: str) -> str:
    """The dataset name a compiled file's stem stands for (`sim2__q_match-0.5` -> `sim2:q_match=0.5`)."""
    name, *pairs = slug.split("__")
    return name + (":" + ",".join(pair.replace("-", "=", 1) for pair in pairs) if pairs else "")


def source_params(name: str) -> tuple[Param, ...] | None:
    """The parameters a registered source declares; None for a name the registry does not know."""
    if name not in SOURCES:
        return None
    declared = getattr(SOURCES.load(name), "params", ())
    if not all(isinstance(p, Param) for p in declared):
        return None
    return tuple(declared)


def canonical_params(name: str, raw: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(key, canonical text) pairs, sorted, without those equal to their defaults. Errors name the parameter."""
    own = source_params(name)
    where = f"dataset {name}:" + ",".join(f"{k}={v}" for k, v in raw.items()) if raw else f"dataset {name}"
    if own is not None:
        unknown_parameters(where, name, {k: v for k, v in raw.items() if k not in _SPLIT_BY_NAME}, own,
                           also=list(_SPLIT_BY_NAME))
    declared = {**{p.name: p for p in own or ()}, **_SPLIT_BY_NAME}
    out: dict[str, str] = {}
    for key, text in raw.items():
        param = declared.get(key)
        if param is None:  # a source the registry does not know: kept as written
            out[key] = text
            continue
        value = param.parse(where, text)
        if not param.is_default(value):
            out[key] = param.format(value)
    return tuple(sorted(out.items()))
