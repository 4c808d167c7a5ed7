"""Seeds derived from the parts that name a random draw: the three derivations diffseg uses.

Each is stable across processes and machines (unlike Python's salted `hash()`), and each gives
different seeds for the same parts. They are kept apart on purpose: what they seed is stored or
published, so merging them would change cached feature bytes and the demo's numbers.

    function      derivation                                 seeds                          why it stays
    ------------  -----------------------------------------  -----------------------------  --------------------------
    derive_seed   sha256 of the parts' repr, 0x1f-joined;    the trajectory's draws: VAE    recorded in every cache as
                  first 8 bytes, little-endian (64 bits)     posterior sample, eta noise    extract.seeding
                                                             (pipeline/seeding.py)          "content-v1": a change
                                                                                            rewrites every feature
    stable_seed   the same of the parts' str, shifted        extract's per-sample views     decides the pixels of each
                  right by 1 (63 bits)                       (crop, flip) and photometric   cached view; str and repr
                                                             jitter (stages/extract/        differ on strings, so view
                                                             worker.py)                     ids give other seeds
    hash_seed     numpy SeedSequence((seed, phase, step)),   each pre-training step's       the built-in `mini` model
                  first uint64 of its state, shifted right   noise, timesteps, posterior    was trained with it: a
                  by 1 (63 bits)                             samples (pretrain/checkpoint)  change retrains it and
                                                                                            moves the demo's numbers

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
