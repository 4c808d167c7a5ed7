"""`python -m diffseg.cli` (torchrun: `torchrun --nproc_per_node K -m diffseg.cli train ...`)."""

from diffseg.cli import main

main()
