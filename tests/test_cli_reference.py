"""docs/reference/cli.md is generated from the typer app; it must be what the app gives now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_cli_reference_is_current():
    page = ROOT / "docs" / "reference" / "cli.md"
    assert page.exists(), "docs/reference/cli.md is missing: run `python docs/gen_cli.py`"
    assert page.read_text(encoding="utf-8") == _generator().render(), (
        "docs/reference/cli.md is not current: run `python docs/gen_cli.py` and commit it"
    )


def test_the_reference_names_every_command_and_option():
    import typer

    from diffseg.cli import app

    page = _generator().render()
    group = typer.main.get_command(app)
    stack = [(group, ["diffseg"])]
    while stack:
        command, path = stack.pop()
        assert f"`{' '.join(path)}`" in page
        for param in command.params:
            if getattr(param, "hidden", False):
                continue  # a deprecated spelling, still accepted with a warning: not taught
            for opt in getattr(param, "opts", []) if param.param_type_name == "option" else []:
                assert f"`{opt}`" in page, f"{' '.join(path)} {opt} missing from the CLI reference"
        for name, sub in getattr(command, "commands", {}).items():
            stack.append((sub, [*path, name]))
