"""The command line: absl flags derived from the config dataclasses, and errors reported without a traceback.

Every entry script defines its flags with `define_flags(SectionClass)`, so a flag's name, default, help
and allowed values come from the one field that holds them, and builds its sections back with
`section_from_flags`. `main(run)` wraps `absl.app.run`: an XdistilError (bad flag, bad input line,
broken model directory) or an OSError ends the program with `error: <what> (<where>)` and exit status 1.
"""
from __future__ import annotations

import dataclasses
import sys
import typing

from absl import app, flags

from xdistil.errors import ConfigError, XdistilError

FLAGS = flags.FLAGS


def define_flags(section_cls, flag_values: flags.FlagValues = FLAGS, *, defaults: dict | None = None,
                 skip: tuple[str, ...] = (), help_suffix: dict | None = None) -> None:
    """Register one flag per field of `section_cls` (a config dataclass made of `setting` fields).

    `defaults` overrides a field's default for this script; `skip` leaves fields out.
    """
    hints = typing.get_type_hints(section_cls)
    for field in dataclasses.fields(section_cls):
        if not field.metadata.get("flag", True) or field.name in skip:
            continue
        default = (defaults or {}).get(field.name, field.default)
        help_text = field.metadata.get("help", "") + (help_suffix or {}).get(field.name, "")
        kind = hints[field.name]
        common = {"name": field.name, "default": default, "help": help_text, "flag_values": flag_values}
        choices = field.metadata.get("choices")
        if kind is bool:
            flags.DEFINE_bool(**common)
        elif choices is not None:
            flags.DEFINE_enum(enum_values=list(choices), **common)
        elif _is(kind, int):
            flags.DEFINE_integer(**common)
        elif _is(kind, float):
            flags.DEFINE_float(**common)
        elif "tuple" in str(kind):
            flags.DEFINE_list(**{**common, "default": None if default is None else [str(v) for v in default]})
        else:
            flags.DEFINE_string(**common)


def _is(kind, base) -> bool:
    return kind is base or base in typing.get_args(kind)


def section_from_flags(section_cls, flag_values: flags.FlagValues = FLAGS, **fixed):
    """Build `section_cls` from parsed flags (fields without a flag from `fixed` or their default).

    List flags of integers are converted here, with an error naming the flag."""
    hints = typing.get_type_hints(section_cls)
    values = {}
    for field in dataclasses.fields(section_cls):
        if field.name in fixed:
            values[field.name] = fixed[field.name]
        elif field.name in flag_values and field.metadata.get("flag", True):
            value = flag_values[field.name].value
            if value is not None and "tuple" in str(hints[field.name]):
                value = _integers(field.name, value)
            values[field.name] = value
    return section_cls(**values)


def _integers(name: str, values) -> tuple[int, ...]:
    try:
        return tuple(int(str(value).strip()) for value in values)
    except ValueError:
        raise ConfigError(name, f"expects comma-separated integers, got {','.join(map(str, values))!r}") from None


def report_error(error: BaseException) -> str:
    """The one-line message for a user-fixable error."""
    if isinstance(error, XdistilError):
        return f"error: {error.what} ({error.where})" if error.where else f"error: {error.what}"
    return f"error: {error}"


def main(run) -> None:
    """`absl.app.run(run)`, turning XdistilError and OSError into `error: ...` and exit status 1."""

    def guarded(argv):
        try:
            return run(argv)
        except (XdistilError, OSError) as error:
            print(report_error(error), file=sys.stderr)
            sys.exit(1)

    app.run(guarded)


def required(flag_values: flags.FlagValues, name: str):
    """The value of flag `name`, or ConfigError when it was not given."""
    value = flag_values[name].value
    if value is None:
        raise ConfigError(name, "a value is required")
    return value
