"""The command line's own promises: instant --help (no heavy imports), every command present,
parser errors exit 2 and user errors exit 1 with one line and no traceback."""

import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from diffseg.cli import app

RUNNER = CliRunner()
COMMANDS = ["extract", "train", "eval", "ablate", "predict", "demo", "pretrain", "env", "data", "cache"]


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from diffseg.cli import app; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'zarr', 'dask', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the CLI pulled in {out.stdout.strip()}"


# Every subcommand, in order: a group's help lists what is registered, so only this list notices one
# that disappears (a new one must be added here).
SUBCOMMANDS = {"data": ["check"], "cache": ["info", "verify", "show", "migrate", "convert"]}


def listed_commands(help_text: str) -> list[str]:
    """The names in the "Commands" panel of typer's help, in order.

    Only that panel counts: the app's description mentions `extract`, `train` and `demo` too, so
    searching the whole text would pass with those commands missing.
    """
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("╭─ Commands"))
    names: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("╰"):
            return names
        cell = line[2:]  # after "│ "; a wrapped description line starts with spaces
        if cell[:1].strip():
            names.append(cell.split()[0])
    raise AssertionError(f"the Commands panel never closes:\n{help_text}")


def test_help_lists_every_command():
    group = typer.main.get_command(app)
    assert list(group.commands) == COMMANDS
    res = RUNNER.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert listed_commands(res.output) == COMMANDS
    for name, expected in SUBCOMMANDS.items():
        registered = list(group.commands[name].commands)
        assert registered == expected, (name, registered)
        res = RUNNER.invoke(app, [name, "--help"])
        assert res.exit_code == 0 and listed_commands(res.output) == expected, res.output


@pytest.mark.parametrize(
    "argv",
    [
        ["extract", "--dataset", "nope"],
        ["train", "--cache", "/does/not/exist"],
        ["extract", "--dataset", "demo", "--resolution", "12"],
        ["extract", "--dataset", "demo", "--encode", "median"],
    ],
)
def test_parser_errors_exit_2(argv):
    res = RUNNER.invoke(app, argv)
    assert res.exit_code == 2, res.output


def test_user_error_is_one_line_exit_1(tmp_path):
    res = RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "gtav",
            "--root",
            str(tmp_path / "nowhere"),
            "--model",
            "tiny",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nowhere" in lines[0], res.output
    assert not (tmp_path / "c").exists()


def test_console_script_turns_errors_into_one_line(tmp_path):
    # The real entry point, as a user runs it: stderr holds one line, exit code 1.
    proc = subprocess.run(
        [sys.executable, "-c", "from diffseg.cli import main; main()", "cache", "info", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
