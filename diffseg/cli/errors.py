"""User errors at the command line: one line on stderr, exit code 1, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from diffseg.core.errors import DiffsegError

F = TypeVar("F", bound=Callable[..., Any])


def report(err: DiffsegError) -> typer.Exit:
    """Print `err` as the one line a user sees; the Exit(1) to raise from the command."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(1)


def user_errors(func: F) -> F:
    """Turn a DiffsegError into one line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DiffsegError as err:
            raise report(err) from None

    return wrapper  # type: ignore[return-value]  # same signature: functools.wraps


def warn(message: str) -> None:
    """One warning line on stderr."""
    typer.echo(f"warning: {message}", err=True)
