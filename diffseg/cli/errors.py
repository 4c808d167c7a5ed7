"""User errors at the command line: one line on stderr, exit code 1, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from diffseg.core.errors import DiffsegError
from diffseg.core.storage_errors import storage_error

F = TypeVar("F", bound=Callable[..., Any])


def report(err: DiffsegError) -> typer.Exit:
    """Print `err` as the one line a user sees; the Exit(1) to raise from the command."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(1)


def user_errors(func: F) -> F:
    """Turn a DiffsegError, or a storage fault of core/storage_errors.py (no such bucket, access denied,
    read-only file system, no space, ...), into one line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DiffsegError as err:
            raise report(err) from None
        except Exception as err:
            line = storage_error(err)
            if line is None:
                raise  # not a fault a user can fix: the traceback is the report
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]  # same signature: functools.wraps


def warn(message: str) -> None:
    """One warning line on stderr."""
    typer.echo(f"warning: {message}", err=True)
