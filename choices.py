"""Mode-like settings: each is a `typing.Literal`, checked by the one validator here when its value is made.

Every config dataclass calls `check_fields(self)` in `__post_init__`, so a typo in a config.json fails at load with
the field, the bad value and the accepted values named; values that arrive per request (a chat option, a CLI flag)
go through `check_choice` against the same Literal. Imported by adapters/, generation/ and mumu/ alike, so it lives
below all of them and imports nothing of the project.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any


class ChoiceError(ValueError):
    """A value outside its accepted set; `name` is the field's dotted path as far as it is known."""

    def __init__(self, name: str, value: Any, accepted: tuple[Any, ...]) -> None:
        self.name, self.value, self.accepted = name, value, accepted
        super().__init__(f"{name} must be one of {', '.join(map(str, accepted))}, got {value!r}")

    def __reduce__(self) -> tuple[type, tuple[str, Any, tuple[Any, ...]]]:
        # Rebuilt from its fields when it crosses a process boundary (a Ray replica, a DataLoader worker):
        # the default would call __init__ with the message alone.
        return type(self), (self.name, self.value, self.accepted)


def options(literal: Any) -> tuple[Any, ...]:
    """The accepted values of a Literal type, in declaration order."""
    values = typing.get_args(literal)
    if typing.get_origin(literal) is not typing.Literal or not values:
        raise TypeError(f"{literal!r} is not a Literal type")
    return values


def check_choice(value: Any, literal: Any, name: str) -> Any:
    """Return value if the Literal type accepts it, else raise ChoiceError naming the accepted values."""
    accepted = options(literal)
    if value not in accepted:
        raise ChoiceError(name, value, accepted)
    return value


def check_fields(instance: Any) -> None:
    """Check every Literal field of a dataclass instance (also Optional[Literal] and tuples/lists of a Literal)."""
    owner = type(instance).__name__
    for field, (literal, many, optional) in _literal_fields(type(instance)).items():
        value = getattr(instance, field)
        if value is None and optional:
            continue
        if many:
            for index, item in enumerate(value):
                check_choice(item, literal, f"{owner}.{field}[{index}]")
        else:
            check_choice(value, literal, f"{owner}.{field}")


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple[Any, bool, bool]]:
    hints = typing.get_type_hints(cls)
    found = {}
    for field in dataclasses.fields(cls):
        hint, optional, many = hints[field.name], False, False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else hint
        if typing.get_origin(hint) in (tuple, list):
            hint, many = typing.get_args(hint)[0], True
        if typing.get_origin(hint) is typing.Literal:
            found[field.name] = (hint, many, optional)
    return found
