"""Recipe fields: a default, a kind and bounds for one key, checked once where a recipe enters.

Plug-ins (networks, task families, inner rules) declare their keys once, as module fields
(`hyperparameter`, `hyperparameter_group`); `schema_of` collects them and `from_section` builds
the module by keyword. Keys a plug-in reads but does not hold (where a family's data come from)
are a mapping of `Field`s (`SCHEMA` class attributes). `pcmmeta.experiment.recipe` merges them
into the recipe's schema.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pcmmeta.core.seeds import check_seed
from pcmmeta.errors import UserInputError, short_repr


@dataclass(frozen=True)
class Field:
    default: Any
    kind: str  # "int" | "float" | "str" | "bool" | "choice" | "range" | "ints" | "floats" | "path" | "seed" | "name"
    help: str
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    positive: bool = False  # strictly > 0
    choices: Sequence[str] = ()
    length: int | None = 2  # "ints", "floats": how many (None: one or more)


#: The largest magnitude a float32 holds: numbers from users end up in float32 arrays.
FLOAT32_MAX = 3.4028234663852886e38

#: A name that becomes part of a file name: a letter, digit or '_' first (no hidden files, no
#: options), then letters, digits and `_ . + -` — no '/', no '..' path, nothing a shell quotes.
NAME_PATTERN = re.compile(r"[^\W][\w.+-]{0,79}")

#: The most tasks of a meta-batch or an evaluation: 400× the largest shipped (256), and what
#: drift-eval's --tasks allows. More is a hang, not an experiment: 10⁸ small sine tasks fit in
#: 20 GB, and at sine-quick's 32 tasks per 0.055 s one meta-iteration would take two days. The
#: memory check (`pcmmeta.experiment.memory`) guards the sizes below this bound.
MAX_TASKS = 100_000

#: The longest text value a recipe may hold, characters: a path longer than Linux's PATH_MAX
#: (4096 bytes) cannot be opened, and a longer value would only be copied into every message.
MAX_TEXT = 4096
#: C0 controls and DEL: no name or path a user means holds them (a NUL cannot be passed to the
#: operating system at all), and in a message they would move the cursor or clear the screen.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_name(value: Any, where: str) -> str:
    """`value` if it is safe as part of a file name (`NAME_PATTERN`), else `UserInputError`."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise UserInputError(
            f"{where}: must be a file name of at most 80 letters, digits and _ . + - (starting with a letter or digit, no '..'), got {short_repr(value)}"
        )
    return value


def check_text(value: Any, where: str) -> str:
    """`value` if it is a non-empty string of at most `MAX_TEXT` characters without control
    characters, else `UserInputError` naming `where`."""
    if not isinstance(value, str) or not value:
        raise UserInputError(f"{where}: must be a non-empty string, got {short_repr(value)}")
    if len(value) > MAX_TEXT:
        raise UserInputError(f"{where}: at most {MAX_TEXT} characters, got {len(value)}")
    bad = CONTROL_CHARACTERS.search(value)
    if bad:
        raise UserInputError(
            f"{where}: control character {bad.group()!r} at position {bad.start()}; give a name or path without control characters"
        )
    return value


def _check_bounds(field: Field, value: float, where: str, what: str = "", given: Any = None) -> None:
    """`field`'s bounds on one number; `what` says which (for lists: 'every value '), `given`
    is what the message shows (the whole list; default the number)."""
    shown = short_repr(value if given is None else given)
    if field.positive and not value > 0:
        raise UserInputError(f"{where}: {what}must be > 0, got {shown}")
    if field.low is not None and value < field.low:
        raise UserInputError(f"{where}: {what}must be ≥ {field.low:g}, got {shown}")
    if field.high is not None and value > field.high:
        raise UserInputError(f"{where}: {what}must be ≤ {field.high:g}, got {shown}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check(field: Field, value: Any, where: str) -> Any:
    """The value, normalised, or `UserInputError` naming `where` (file: 'key.path')."""
    kind = field.kind
    if kind == "path" and value is None:
        return None
    if kind in ("str", "path"):
        return check_text(value, where)
    if kind == "bool":
        if not isinstance(value, bool):
            raise UserInputError(f"{where}: must be true or false, got {short_repr(value)}")
        return value
    if kind == "choice":
        if value not in field.choices:
            raise UserInputError(f"{where}: must be one of {', '.join(field.choices)}, got {short_repr(value)}")
        return value
    if kind == "range":
        if not (
            isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value) and value[0] <= value[1]
        ):
            raise UserInputError(f"{where}: must be [low, high] with low ≤ high, got {short_repr(value)}")
        return [float(v) for v in value]
    if kind == "ints":
        n = field.length
        ok = isinstance(value, list) and (len(value) == n if n else len(value) >= 1)
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        if not ok:
            count = f"{n} integers" if n else "a list of integers"
            raise UserInputError(f"{where}: must be {count} ≥ 1, got {short_repr(value)}")
        for v in value:
            _check_bounds(field, v, where, "every value ", value)
        return list(value)
    if kind == "floats":
        n = field.length
        ok = isinstance(value, list) and (len(value) == n if n else len(value) >= 1) and all(_number(v) for v in value)
        if not ok:
            raise UserInputError(
                f"{where}: must be {f'{n} numbers' if n else 'a list of numbers'}, got {short_repr(value)}"
            )
        for v in value:
            if field.positive and not v > 0:
                raise UserInputError(f"{where}: every value must be > 0, got {short_repr(value)}")
            if (field.low is not None and v < field.low) or (field.high is not None and v > field.high):
                raise UserInputError(
                    f"{where}: every value must be in [{'-inf' if field.low is None else f'{field.low:g}'}, {'inf' if field.high is None else f'{field.high:g}'}], got {short_repr(value)}"
                )
        return [float(v) for v in value]
    if kind == "seed":
        return check_seed(value, where)
    if kind == "name":
        return check_name(value, where)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserInputError(f"{where}: must be an integer, got {short_repr(value)}")
    elif kind == "float":
        if not _number(value):
            raise UserInputError(f"{where}: must be a finite number, got {short_repr(value)}")
        value = float(value)
    _check_bounds(field, value, where)
    return value


# ------------------------------------------------------------------ one declaration per key
#: Where a module field keeps its recipe `Field` (`dataclasses.Field.metadata`).
RECIPE_KEY = "pcmmeta.recipe"
#: Where a module field keeps the module class whose keys it groups (`hyperparameter_group`).
RECIPE_GROUP = "pcmmeta.recipe_group"


def as_value(value: Any) -> Any:
    """A recipe value as a module holds it: lists (ranges, sizes) become tuples (hashable, so
    a static field)."""
    return tuple(as_value(v) for v in value) if isinstance(value, list) else value


def hyperparameter(default: Any, kind: str, help: str, **bounds: Any) -> Any:
    """A static module field that is also a recipe key: its default, kind, bounds and help,
    declared once (`schema_of` collects them, `from_section` builds the module by keyword)."""
    import equinox as eqx  # the recipe checks above run without JAX

    return eqx.field(
        static=True, default=as_value(default), metadata={RECIPE_KEY: Field(default, kind, help, **bounds)}
    )


def hyperparameter_group(cls: type) -> Any:
    """A module field holding a `cls` module whose hyperparameters are keys of the same recipe
    section, listed where the field is declared (a network's architecture and its neurons'
    dynamics: one `network:` section, two modules)."""
    import equinox as eqx  # as in `hyperparameter`: the recipe checks run without JAX

    return eqx.field(default_factory=cls, metadata={RECIPE_GROUP: cls})


def schema_of(cls: type, extra: Mapping[str, Field] | None = None, first: Sequence[str] = ()) -> dict[str, Field]:
    """The recipe keys a module class declares with `hyperparameter`, in declaration order (a
    `hyperparameter_group`'s keys where the group is declared), then the keys of `extra` (read
    but not held by the module); the keys named in `first` lead, in that order (for a documented
    order that interleaves the two)."""
    keys: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        declared = {f.name: f.metadata[RECIPE_KEY]} if RECIPE_KEY in f.metadata else {}
        if RECIPE_GROUP in f.metadata:
            declared = schema_of(f.metadata[RECIPE_GROUP])
        for name, field in declared.items():
            if name in keys:
                raise TypeError(f"{cls.__name__}: recipe key {name!r} declared twice")
            keys[name] = field
    keys.update(extra or {})
    return {**{name: keys[name] for name in first}, **keys}


def from_section(cls: type, section: dict, **more: Any) -> Any:
    """`cls` built by keyword from a validated recipe section: every `hyperparameter` field
    from its key, every `hyperparameter_group` from the same section, the rest from `more`."""
    values = {}
    for f in dataclasses.fields(cls):
        if RECIPE_KEY in f.metadata:
            values[f.name] = as_value(section[f.name])
        elif RECIPE_GROUP in f.metadata:
            values[f.name] = from_section(f.metadata[RECIPE_GROUP], section)
    return cls(**values, **more)
