"""Settings for both sides, one way: frozen dataclasses whose fields carry their default,
their range or choices, their help and their command-line flag together (`setting`),
loaded from one TOML file (`load`), overridden by the flags generated from those same
fields (`add_flags`, `flag_values`, `override`). Anything malformed, unknown, of the wrong
type or out of range is a ConfigError naming its key; nothing silently falls back to a
default.

    @dataclass(frozen=True)
    class RecorderSettings:
        pre_roll_s: float = setting(0.5, "audio kept from before the wake word ends", within(0, 2, "seconds"))

A rule that relates two keys (one shorter than another, two functions on one pin) stays in
the side's own `validate`.
"""

from __future__ import annotations

import argparse
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, Field, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from earmark.wire.errors import ConfigError

T = TypeVar("T")


class Rule:
    """What a value must be, and the words that say so."""

    def __init__(self, holds: Callable[[Any], bool], says: str) -> None:
        self.holds, self.says = holds, says

    def fails(self, value: Any) -> str:
        """"" if `value` keeps the rule, else what it must be."""
        return "" if self.holds(value) else self.says


class AllOf(Rule):
    """Every one of these rules, the first broken one saying why."""

    def __init__(self, *rules: Rule) -> None:
        super().__init__(lambda v: all(r.holds(v) for r in rules), "")
        self.rules = rules

    def fails(self, value: Any) -> str:
        return next((why for r in self.rules if (why := r.fails(value))), "")


def within(lo: float, hi: float, unit: str = "", zero: str = "") -> Rule:
    """lo..hi inclusive; `zero`: what 0 means, if 0 is allowed besides the range ("off")."""
    text = f"must be {lo:g}..{hi:g}" + (f" {unit}" if unit else "")
    if zero:
        return Rule(lambda v: v == 0 or lo <= v <= hi, f"must be 0 ({zero}) or {text.removeprefix('must be ')}")
    return Rule(lambda v: lo <= v <= hi, text)


def between(lo: float, hi: float) -> Rule:
    """Strictly between lo and hi (a score, a probability)."""
    return Rule(lambda v: lo < v < hi, f"must be between {lo:g} and {hi:g}")


def below(hi: float, zero: str = "off") -> Rule:
    """0 (`zero`) up to, not including, hi (a check's bar)."""
    return Rule(lambda v: 0 <= v < hi, f"must be 0 ({zero}) or below {hi:g}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "must be one of " + ", ".join(choices))


def matching(holds: Callable[[Any], bool], says: str) -> Rule:
    return Rule(holds, says)


def all_of(*rules: Rule) -> Rule:
    return AllOf(*rules)


def setting(default: Any = MISSING, help: str = "", rule: Rule | None = None, *, flag: str = "",
            factory: Callable[[], Any] | None = None, internal: bool = False) -> Any:
    """A settings field: its default (or `factory`), what it is for, what it must be, and the
    command-line flag that sets it (if any). `internal`: set by code, never by the config."""
    metadata = {"help": help, "rule": rule, "flag": flag, "internal": internal}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def load(cls: type[T], raw: Any, prefix: str = "", **given: Any) -> T:
    """`cls` from a TOML table (and `given`: values already known, such as the data dir)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key {prefix.rstrip('.') or 'file'}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    values = dict(given)
    for key, value in raw.items():
        f = known.get(key)
        if f is None or f.metadata.get("internal"):
            raise ConfigError(f"config key {prefix}{key} is unknown")
        values[key] = _value(hints[key], value, f"{prefix}{key}", f)
    return cls(**values)


def _value(annotation: Any, value: Any, key: str, f: Field[Any] | None) -> Any:
    """`value` as `annotation` wants it, exactly: an integer is taken where a float is
    expected, and nothing else converts."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (types.UnionType, typing.Union) and type(None) in args:
        (annotation,) = (a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    if is_dataclass(annotation):
        return load(annotation, value, f"{key}.")  # type: ignore[arg-type]
    if typing.get_origin(annotation) is tuple and args and is_dataclass(args[0]):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"config key {key}: expected a non-empty array of tables")
        item_type: type = args[0]  # type: ignore[assignment]
        return tuple(load(item_type, item, f"{key}[{i}].") for i, item in enumerate(value))
    if typing.get_origin(annotation) is tuple and args and args[0] is str:  # a list of strings
        if not isinstance(value, list) or not all(type(v) is str for v in value):
            raise ConfigError(f"config key {key}: expected an array of strings")
        return tuple(_value(str, v, f"{key}[{i}]", f) for i, v in enumerate(value))
    if annotation is float and type(value) is int:
        value = float(value)
    if annotation not in (str, int, float, bool):
        raise ConfigError(f"config key {key}: a {annotation} cannot be set from a config file")
    if type(value) is not annotation:
        raise ConfigError(f"config key {key}: expected {annotation.__name__}, got {type(value).__name__}")
    rule: Rule | None = f.metadata.get("rule") if f is not None else None
    if rule is not None and (why := rule.fails(value)):
        raise _bad_value(key, why)
    return value


def _bad_value(key: str, why: str) -> ConfigError:
    return ConfigError(f"config key {key}: {why}", key, why)


def check(settings: Any, prefix: str = "") -> None:
    """Every field's rule on the values as they are (after flags): a flag out of range is a
    ConfigError as a config file's would be."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):
            for i, item in enumerate(value):
                check(item, f"{prefix}{f.name}[{i}].")
        elif isinstance(value, tuple) and (rule := f.metadata.get("rule")) is not None:
            for i, item in enumerate(value):
                if why := rule.fails(item):
                    raise _bad_value(f"{prefix}{f.name}[{i}]", why)
        elif value is not None and (rule := f.metadata.get("rule")) is not None and (why := rule.fails(value)):
            raise _bad_value(f"{prefix}{f.name}", why)


def _fields_by_path(cls: type, prefix: str = "") -> dict[str, tuple[Field[Any], Any]]:
    """Every field below `cls`, by dotted path, with its resolved type."""
    found: dict[str, tuple[Field[Any], Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        annotation = hints[f.name]
        found[prefix + f.name] = (f, annotation)
        if is_dataclass(annotation):
            found |= _fields_by_path(annotation, f"{prefix}{f.name}.")  # type: ignore[arg-type]
    return found


def add_flags(parser: argparse.ArgumentParser, cls: type, paths: list[str], **defaults: Any) -> None:
    """A flag for each of these settings, named, typed and explained by its field."""
    known = _fields_by_path(cls)
    for path in paths:
        f, annotation = known[path]
        flag = f.metadata.get("flag") or "--" + path.split(".")[-1].replace("_", "-")
        parser.set_defaults(**{"flag-name:" + path: flag})  # for blame_flags
        kind = annotation if typing.get_origin(annotation) is tuple else next(
            (a for a in typing.get_args(annotation) if a is not type(None)), annotation)
        options: dict[str, Any] = {"dest": "setting:" + path, "help": f.metadata.get("help", "")}
        if kind is not bool:  # --help shows the value's name, not the internal dest
            options["metavar"] = flag.lstrip("-").split(".")[-1].replace("-", "_").upper()
        if kind is bool:
            options |= {"action": "store_true", "default": None}
        elif typing.get_origin(kind) is tuple:  # repeatable: each use adds one
            options |= {"action": "append", "type": str}
        else:
            options["type"] = kind if kind in (int, float) else str
        parser.add_argument(flag, **options, **defaults)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave, by dotted path (flags left out are not here)."""
    return {name.removeprefix("setting:"): tuple(value) if isinstance(value, list) else value
            for name, value in vars(args).items() if name.startswith("setting:") and value is not None}


@contextmanager
def blame_flags(args: argparse.Namespace, extra: Mapping[str, tuple[str, Any]] | None = None) -> Iterator[None]:
    """A value a flag gave that the settings refuse is that flag's error, by the flag's name
    and value ("--wake-word 'hey_siri': must be one of …"), not a config key the user never
    wrote. `extra`: {dotted path: (flag, value)} for flags that set a setting their own way."""
    try:
        yield
    except ConfigError as exc:
        given = {n.removeprefix("flag-name:"): (flag, getattr(args, "setting:" + n.removeprefix("flag-name:"), None))
                 for n, flag in vars(args).items() if n.startswith("flag-name:")} | dict(extra or {})
        key = exc.key or ""
        for path, (flag, value) in given.items():
            rest = key[len(path):]
            if value is None or exc.why is None or not key.startswith(path) or rest[:1] not in ("", "[", "."):
                continue
            index = re.match(r"\[(\d+)\]", rest)
            if isinstance(value, list | tuple):
                value = value[int(index.group(1))] if index and int(index.group(1)) < len(value) else None
            shown = f" {value!r}" if isinstance(value, str | int | float) else ""
            raise ConfigError(f"{flag}{shown}: {exc.why}", key, exc.why) from None
        raise


def override(settings: T, values: Mapping[str, Any]) -> T:
    """`settings` with each dotted path set to its value."""
    for path, value in values.items():
        settings = _set(settings, path.split("."), value)
    return settings


def _set(obj: Any, parts: list[str], value: Any) -> Any:
    if len(parts) == 1:
        return replace(obj, **{parts[0]: value})
    return replace(obj, **{parts[0]: _set(getattr(obj, parts[0]), parts[1:], value)})


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every setting: what the example config documents."""
    rows = []
    for path, (f, annotation) in _fields_by_path(cls).items():
        if f.metadata.get("internal") or is_dataclass(annotation):
            continue
        default = f.default if f.default is not MISSING else "(see below)"
        rows.append((path, repr(default), str(f.metadata.get("help", ""))))
    return rows
