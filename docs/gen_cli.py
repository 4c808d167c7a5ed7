"""Write docs/reference/cli.md from the typer app, so the CLI reference cannot drift from the code.

Run from the repository root: `python docs/gen_cli.py` (rewrites the file) or `python docs/gen_cli.py --check`
(exit 1 when the committed file is not what the app gives; tests/test_cli_reference.py does the same).
The page is built from the parameter objects of the click command typer builds (read by duck typing: typer
may carry its own copy of click), not from `--help`'s rich rendering, so it does not depend on the terminal
width or on colours.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

OUTPUT = Path(__file__).resolve().parent / "reference" / "cli.md"

HEADER = """# Command line reference

Generated from the typer app by `python docs/gen_cli.py`; do not edit by hand (a test fails when this page is
not current). Every command also answers `--help`. User errors print one line on stderr and exit 1; the
parser's errors exit 2.
"""


def _app_command() -> Any:
    from diffseg.cli import app  # the module or the package, whichever the tree has

    return typer.main.get_command(app)


def _type_name(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    if hasattr(param, "display_type"):  # typer's own click (typer >= 0.2x)
        return str(param.display_type(ctx)).strip("<>")
    kind = param.type  # plain click
    choices = getattr(kind, "choices", None)
    return "|".join(str(c) for c in choices) if choices else str(kind.name).lower()


def _default(param: Any) -> str:
    value = param.default
    if value is None or callable(value) or param.required:
        return ""
    if getattr(param, "is_flag", False) and getattr(param, "secondary_opts", None):
        on, off = param.opts[0], param.secondary_opts[0]
        return on if value else off
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else ""
    if hasattr(value, "value"):  # an enum member
        value = value.value
    return str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_rows(command: Any) -> list[str]:
    ctx = command.context_class(command, info_name=command.name)
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        if param.param_type_name == "argument":
            names = f"`{(param.metavar or param.name).upper()}`" + (" ..." if param.nargs == -1 else "")
            help_text = getattr(param, "help", None) or ""
        else:
            names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
            help_text = param.help or ""
        default = _default(param)
        required = "yes" if param.required else ""
        rows.append(
            f"| {names} | {_cell(_type_name(param, ctx))} | {_cell(default)} | {required} | {_cell(help_text)} |"
        )
    return rows


def _section(command: Any, path: list[str], out: list[str]) -> None:
    title = " ".join(path)
    depth = min(len(path), 4)
    out.append(f"{'#' * (depth + 1)} `{title}`\n")
    if command.help:
        out.append(command.help.strip().split("\f")[0].strip() + "\n")
    rows = _param_rows(command)
    if rows:
        out.append("| name | type | default | required | help |")
        out.append("|---|---|---|---|---|")
        out.extend(rows)
        out.append("")
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not getattr(sub, "hidden", False):
                _section(sub, [*path, name], out)


def render() -> str:
    """The whole page, as the committed file must read."""
    out = [HEADER]
    _section(_app_command(), ["diffseg"], out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is not current: run `python docs/gen_cli.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
