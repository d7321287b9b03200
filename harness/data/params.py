"""Typed dataset parameters (`sim2:q_match=0.5`, `ml-small:split_seed=1`): declared once, parsed to their typed
value, printed in one canonical form.

Every source declares its parameters as a tuple of `Param` (`source.params`); the compiler's own split parameters
are SPLIT_PARAMS. harness.data.spec uses both to give every spelling of the same parameters one canonical name
(`q_match=0.50`, `=.5` and `=0.5` are all `q_match=0.5`; a value equal to its default is left out), hence one file
and one fingerprint. Sources parse the values they receive again with `parse_params` (typed, defaults filled in).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import HarnessError

_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_TEXT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


@dataclass(frozen=True)
class Param:
    """One dataset parameter: its type, default and allowed range (`low_open`: the low end is excluded).
    Unbounded by default (the compiler's split parameters are checked together, by SplitParams.validate)."""

    name: str
    kind: type  # int or float
    default: int | float | None
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    help: str = ""
    # A parameter added after datasets were compiled and published: at its default it is left out of the resolved
    # parameters, so every dataset that existed before it keeps its parameters, canonical name and fingerprint.
    omitted_at_default: bool = False

    def allowed(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return f"a valid {self.kind.__name__}"
        if self.kind is int:
            if math.isinf(self.high):
                return "a positive integer" if self.low == 1 else f"an integer >= {int(self.low)}"
            return f"an integer in [{int(self.low)}, {int(self.high)}]"
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def parse(self, where: str, text: str) -> int | float:
        """The typed value of `text`; a HarnessError naming `where`, the parameter, the value and the range."""
        fault = f"{where}: parameter {self.name}={text!r} is not {self.allowed()}"
        pattern = _INT_TEXT if self.kind is int else _FLOAT_TEXT
        if not pattern.match(text.strip()):
            raise HarnessError(fault)
        value: int | float = int(text) if self.kind is int else float(text) + 0.0  # + 0.0: -0.0 is 0.0
        too_low = value <= self.low if self.low_open else value < self.low
        if not math.isfinite(value) or too_low or value > self.high:
            raise HarnessError(fault)
        return value

    def format(self, value: int | float) -> str:
        """The canonical text: integers in decimal, numbers as the shortest text that reads back to the same
        float, without a trailing '.0' (0.5 -> '0.5', 1.0 -> '1', 1e-05 -> '1e-05'; the spelling the experiments
        always used, `f'{value:g}'`, for every value of up to six significant digits)."""
        if self.kind is int:
            return str(int(value))
        text = repr(float(value) + 0.0)
        return text[:-2] if text.endswith(".0") else text

    def is_default(self, value: int | float) -> bool:
        return self.default is not None and value == self.default


# The compiler's split parameters (harness.data.split_params.SplitParams): every dataset takes them.
SPLIT_PARAMS: tuple[Param, ...] = (
    Param("split_seed", int, 0, help="seed of the deterministic query split"),
    Param("valid_frac", float, 0.1, help="share of unassigned queries for validation"),
    Param("test_frac", float, 0.1, help="share of unassigned queries for test"),
    Param("min_user_interactions", int, 5, help="users with fewer kept interactions are dropped"),
    Param("head_fraction", float, 0.01, help="head = top max(1, ceil(head_fraction * n_items)) items per task"),
)


def unknown_parameters(where: str, source: str, raw: Mapping[str, str], specs: Sequence[Param],
                       also: Sequence[str] = ()) -> None:
    """A HarnessError naming every parameter of `raw` that `specs` does not declare, and the known ones (with
    `also`, the compiler's parameters every dataset takes, which `raw` must not hold)."""
    known = sorted(p.name for p in specs)
    unknown = sorted(set(raw) - set(known))
    if not unknown:
        return
    if also:
        takes = f"{source} takes {', '.join(known)}" if known else f"{source} takes no parameters of its own"
        takes += f"; every dataset takes {', '.join(also)}"
    else:
        takes = f"known: {', '.join(known)}" if known else f"{source} takes no parameters"
    raise HarnessError(f"{where}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(repr(u) for u in unknown)} ({takes})")


def parse_params(source: str, raw: Mapping[str, str], specs: Sequence[Param]) -> dict[str, int | float | None]:
    """Typed parameters with defaults filled in; unknown names and bad values are HarnessErrors."""
    unknown_parameters(source, source, raw, specs)
    values = {p.name: p.parse(source, raw[p.name]) if p.name in raw else p.default for p in specs}
    by_name = {p.name: p for p in specs}
    return {name: value for name, value in values.items()
            if not (by_name[name].omitted_at_default and value == by_name[name].default)}
