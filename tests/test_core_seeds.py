"""The three seed derivations keep their values: each seeds something stored or published
(cached views and trajectory draws, the built-in model's pre-training)."""

from diffseg.core.seeds import derive_seed, hash_seed, stable_seed


def test_each_derivation_keeps_its_value():
    assert derive_seed(3, "view", "x/1#v0") == 1491431332441688631
    assert stable_seed(3, "view", "x/1#v0") == 3928864271379682629
    assert hash_seed(3, 1, 7) == 2219947408961387175


def test_stable_seed_is_derive_seed_shifted_for_int_parts():
    assert stable_seed(3, 1, 7) == derive_seed(3, 1, 7) >> 1 == 5429289378881451612
