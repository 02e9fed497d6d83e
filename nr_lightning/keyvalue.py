"""The one key=value command-line parser (train's groups aside): ``key=value`` overrides onto a dataclass schema
through OmegaConf, user errors as one ConfigError naming the valid keys, and ``--help`` text listing every key
with its default and its one-line doc (the comment or docstring beside the field). Torch-free."""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .cli_help import describe, key_table
from .errors import ConfigError

__all__ = ["HELP_FLAGS", "help_requested", "key_docs", "keys_help", "parse"]

T = TypeVar("T")
HELP_FLAGS = ("-h", "--help", "help")


def help_requested(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def key_docs(schema: type, values: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, default as shown, one-line doc) of every field, nested dataclasses expanded (cli_help.py)."""
    return describe(schema, values)


def keys_help(schema: type, title: str = "keys", values: dict[str, Any] | None = None) -> str:
    """The ``--help`` listing: every key with its default and its doc."""
    return f"{title} (key=default  doc):\n" + key_table(schema, values)


def parse(schema: type[T], argv: list[str], *, example: str, list_keys: tuple[str, ...] = ()) -> T:
    """``key=value`` arguments onto ``schema``; ``list_keys`` also accept ``a,b`` for ``[a,b]``."""
    dotted = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. {example}); --help lists the keys")
        key, value = arg.split("=", 1)
        key = key.lstrip("+-")
        if key in list_keys and not value.startswith("["):
            value = "[" + ",".join(f"'{p}'" for p in value.split(",") if p) + "]"
        dotted.append(f"{key}={value}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema),  # type: ignore[return-value]
                                                   OmegaConf.from_dotlist(dotted)))
    except ConfigKeyError as e:
        key = getattr(e, "full_key", None) or str(e).splitlines()[0]
        raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(k for k, _, _ in key_docs(schema))}") \
            from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"bad value{' for ' + repr(key) if key else ''}: {str(e).splitlines()[0]}") from None
