"""Derive argparse options from frozen config dataclasses (field docstrings become the help)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import typing
from typing import Any, Literal


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each field of a dataclass body."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def add_dataclass_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    prefix: str = "",
    only: tuple[str, ...] | None = None,
) -> None:
    """Add ``--field-name`` options for the scalar fields of ``cls`` (defaults from the class);
    ``only`` limits them to the named fields."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING or (only is not None and f.name not in only):
            continue
        hint = hints[f.name]
        flag = "--" + prefix + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {
            "dest": prefix.replace("-", "_") + f.name,
            "default": f.default,
            "help": f"{docs.get(f.name, '')} (default: {f.default})",
        }
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint in (int, float, str):
            kwargs["type"] = hint
        else:
            continue
        group.add_argument(flag, **kwargs)


def dataclass_kwargs(cls: type, args: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
    """The values of ``cls``'s fields that :func:`add_dataclass_args` put into ``args``."""
    out = {}
    for f in dataclasses.fields(cls):
        key = prefix.replace("-", "_") + f.name
        if hasattr(args, key):
            out[f.name] = getattr(args, key)
    return out
