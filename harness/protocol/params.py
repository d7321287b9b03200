"""One way to declare an adapter's [params]: a dataclass whose fields are the keys, with their types and defaults.

    @dataclass(frozen=True)
    class BM25Params:
        k1: float = 1.5
        method: Literal["lucene", "robertson"] = "lucene"

        def check(self, fail):             # value ranges; `fail(key, what)` raises, naming file and key
            if self.k1 < 0:
                fail("k1", "give a number >= 0")

    params = parse_params(BM25Params, self.params, where=str(self.submission_dir / "config.toml"))

`parse_params` checks once, for every adapter alike: unknown keys (with the allowed ones listed), missing keys
without a default, and types: a bool is never a number (TOML `true` as a batch size is an error), an int is a
float, `X | None` admits nothing (TOML has no null, but a default may be None), `Literal[...]` lists its choices.
Errors name the config file and the key: `submissions/bm25/config.toml: params.k1 = true must be a float`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Literal, Mapping, TypeVar, Union

from harness.errors import HarnessError

P = TypeVar("P")
_NAMES = {bool: "a bool", int: "an int", float: "a float", str: "a str", dict: "a table", list: "a list"}


def parse_params(cls: type[P], table: Mapping[str, Any], *, where: str, prefix: str = "params") -> P:
    """`cls(**table)` after checking keys and types, then `cls.check(fail)` if it has one."""
    if not isinstance(table, Mapping):
        raise HarnessError(f"{where}: [{prefix}] must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        label = "[params]" if prefix == "params" else prefix
        raise HarnessError(f"{where}: unknown {label} key(s) {unknown}; allowed: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in table and _required(f)]
    if missing:
        raise HarnessError(f"{where}: {prefix} needs {', '.join(repr(m) for m in missing)}")
    hints = typing.get_type_hints(cls)
    values = {name: checked_value(value, hints[name], where, f"{prefix}.{name}") for name, value in table.items()}
    out = cls(**values)
    check = getattr(out, "check", None)
    if check is not None:
        check(_failer(out, where, prefix))
    return out


def checked_value(value: Any, hint: Any, where: str, key: str) -> Any:
    """`value` if it fits the type `hint` (an int given for a float becomes a float), else a HarnessError."""
    options = _options(hint)
    for option in options:
        ok, converted = _fits(value, option)
        if ok:
            return converted
    literals = [v for option in options if typing.get_origin(option) is Literal for v in typing.get_args(option)]
    if literals:
        raise HarnessError(f"{where}: {key} = {value!r}; allowed: {', '.join(repr(v) for v in literals)}")
    names = [_NAMES.get(typing.get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options if o is not type(None)]
    raise HarnessError(f"{where}: {key} = {value!r} must be {' or '.join(names)}")


def _options(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _fits(value: Any, option: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(option) or option
    if option is type(None):
        return value is None, value
    if origin is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(option)), value
    if origin is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):  # TOML true/false is never a number, a string or a table
        return False, value
    if origin is float:
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    return isinstance(value, origin), value


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _failer(params: Any, where: str, prefix: str) -> Callable[[str, str], None]:
    def fail(key: str, what: str) -> None:
        raise HarnessError(f"{where}: {prefix}.{key} = {getattr(params, key)!r}; {what}")

    return fail
