"""Run one diffseg command in this process and print its peak resident memory (MiB).

Used by `bench_memory.py`: each measurement is a fresh interpreter, so ru_maxrss is the
peak of that command alone (the demo dataset and `tiny` model keep it on this CPU).
"""

import json
import resource
import sys
import time

from typer.testing import CliRunner

from diffseg.cli import app


def main(argv: list[str]) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    wall = time.perf_counter() - start
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        raise SystemExit(f"command failed ({result.exit_code}): diffseg {' '.join(argv)}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"peak_mib": peak_mib, "wall_s": wall}))


if __name__ == "__main__":
    main(sys.argv[1:])
