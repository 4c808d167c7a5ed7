"""Seeds derived from the parts that name a random draw: the three derivations diffseg uses.

Each is stable across processes and machines (unlike Python's salted `hash()`), and each gives
different seeds for the same parts. They are kept apart on purpose: what they seed is stored or
published, so merging them would change cached feature bytes and the demo's numbers.

| function      | derivation                                              | seeds (where)                                                        | why this one stays                                                                                  |
|---------------|---------------------------------------------------------|----------------------------------------------------------------------|-----------------------------------------------------------------------------------------------------|
| `derive_seed` | sha256 of the parts' `repr`, joined by 0x1f; first 8 bytes, little-endian (64 bits) | the trajectory's draws: VAE posterior sample, eta noise (pipeline/seeding.py) | recorded in every cache as `extract.seeding` = "content-v1": a change must rewrite every cache's features |
| `stable_seed` | the same over the parts' `str`, shifted right by 1 (63 bits) | extract's per-sample views (crop, flip) and photometric jitter (stages/extract/worker.py) | decides which pixels each cached view holds; `str` and `repr` differ for strings, so view ids give other seeds than `derive_seed` |
| `hash_seed`   | numpy `SeedSequence((seed, phase, step))`, first uint64 of its state, shifted right by 1 | each pre-training step's noise, timesteps, posterior samples (pretrain/checkpoint.py) | the built-in `mini` model was trained with it; a change retrains it and moves the demo's numbers |

For integer parts `stable_seed(*p) == derive_seed(*p) >> 1` (`str` and `repr` agree on ints);
tests/test_core_seeds.py pins one value of each.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _sha256_word(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def derive_seed(*parts) -> int:
    """A 64-bit seed from the parts (ints and strings), over their `repr`."""
    return _sha256_word("\x1f".join(repr(p) for p in parts))


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, over their `str`."""
    return _sha256_word("\x1f".join(str(p) for p in parts)) >> 1


def hash_seed(seed: int, phase: int, step: int) -> int:
    """A 63-bit seed of one (seed, phase, step) from numpy's SeedSequence."""
    return int(np.random.SeedSequence((seed, phase, step)).generate_state(2, np.uint64)[0] >> 1)
