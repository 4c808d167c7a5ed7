"""`python -m diffseg ...`: the same entry point as the `diffseg` command."""

from diffseg.cli import main

main()
