"""One registry for every plugin kind (datasets, adapters): names map to lazily imported `module:attr`.

Listing names never imports the plugin, so `data list` does not pull in torch.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Generic, Iterator, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


def import_object(target: str, *, what: str) -> object:
    """Import 'package.module:attr'; errors name `what` and the target."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise HarnessError(f"{what}: {target!r} is not of the form 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(f"{what}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise HarnessError(f"{what}: module {module_name!r} has no attribute {attr!r}") from exc


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, target: str, doc: str = "") -> None:
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._targets[name] = target
        self._docs[name] = doc

    def names(self) -> list[str]:
        return sorted(self._targets)

    def doc(self, name: str) -> str:
        self._check(name)
        return self._docs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _check(self, name: str) -> None:
        if name not in self._targets:
            close = difflib.get_close_matches(name, self.names(), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise HarnessError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
            )

    def load(self, name: str) -> T:
        self._check(name)
        return import_object(self._targets[name], what=f"{self.kind} {name!r}")  # type: ignore[return-value]
