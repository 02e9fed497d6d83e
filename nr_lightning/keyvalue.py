"""The one key=value command-line parser (train's groups aside): ``key=value`` overrides onto a dataclass schema
through OmegaConf, user errors as one ConfigError naming the valid keys, and ``--help`` text listing every key
with its default and its one-line doc (the comment or docstring beside the field). Torch-free."""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .errors import ConfigError

__all__ = ["HELP_FLAGS", "help_requested", "key_docs", "keys_help", "parse"]

T = TypeVar("T")
HELP_FLAGS = ("-h", "--help", "help")


def help_requested(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def _field_docs(schema: type) -> dict[str, str]:
    """Field name -> its one-line doc: the comment ending the field's line, else the string literal after it."""
    try:
        source = inspect.getsource(schema)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    lines = source.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    fields = set(schema.__dataclass_fields__)
    for i, tok in enumerate(tokens):
        # a field: NAME ':' at the start of a logical line of the class body
        if tok.type != tokenize.NAME or tok.string not in fields or tok.string in docs or i + 1 >= len(tokens) \
                or tokens[i + 1].string != ":" or tokens[i - 1].type not in (tokenize.INDENT, tokenize.NEWLINE,
                                                                             tokenize.DEDENT, tokenize.COMMENT,
                                                                             tokenize.NL):
            continue
        j = i
        while j < len(tokens) and tokens[j].type not in (tokenize.NEWLINE, tokenize.COMMENT):
            j += 1
        if j < len(tokens) and tokens[j].type == tokenize.COMMENT:
            docs[tok.string] = tokens[j].string.lstrip("#").strip()
            continue
        k = j + 1
        while k < len(tokens) and tokens[k].type in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            k += 1
        if k < len(tokens) and tokens[k].type == tokenize.STRING:
            text = inspect.cleandoc(eval(tokens[k].string))  # noqa: S307 (a literal of our own source)
            docs[tok.string] = " ".join(text.split()).split(". ")[0].rstrip(".")
            continue
        above, row = [], tok.start[0] - 2  # the comment lines right above the field
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        if above:
            docs[tok.string] = " ".join(above)
    return docs


def key_docs(schema: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, one-line doc) of every field, nested dataclasses expanded."""
    out: list[tuple[str, Any, str]] = []
    docs = _field_docs(schema)
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default):
            out += key_docs(type(default), f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, default, docs.get(f.name, "")))
    return out


def keys_help(schema: type, title: str = "keys") -> str:
    rows = key_docs(schema)
    width = max(len(f"{k}={d!r}") for k, d, _ in rows) + 2
    lines = [f"{title} (key=value; default, then what it does):"]
    lines += [f"  {f'{k}={d!r}':<{width}}{doc}" for k, d, doc in rows]
    return "\n".join(lines)


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
