"""Feature codecs (diffseg/cache/codecs.py): every codec round-trips within the error bound that
its definition gives (derived here, not read back from the codec), on hand-made arrays with
outliers; specs parse; torch decoding equals numpy decoding; a converted cache decodes as the
codec says and resumes; a cache refuses a resume with another codec."""

import math

import numpy as np
import pytest
import torch
import zarr

from diffseg.cache import CacheReader, FeatureDataset, store
from diffseg.cache.codecs import (
    BASIS,
    CODES,
    MEAN,
    OFFSET,
    OUT_INDEX,
    OUT_VALUE,
    SCALE,
    PcaFit,
    decode,
    encode_torch,
    normalize_spec,
    parse_codec,
    resolve,
)
from diffseg.cache.convert import convert
from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError


def spiky(seed=0, shape=(3, 8, 16, 16)) -> np.ndarray:
    """Smooth-ish activations with a few very large values (SD's up blocks) and exact zeros."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, shape) * rng.uniform(0.1, 5, shape[:2])[..., None, None]
    S, C, h, w = shape
    for s in range(S):
        for c in range(C):
            for _ in range(3):  # three spikes per channel, both signs
                x[s, c, rng.integers(h), rng.integers(w)] = rng.choice([-1, 1]) * rng.uniform(200, 3000)
    x[0, 0, :2] = 0.0
    return x.astype(np.float16)


# -- bitround ----------------------------------------------------------------------------------
@pytest.mark.parametrize("keepbits", [3, 7, 9])
def test_bitround_relative_error_is_at_most_half_a_kept_ulp(tmp_path, keepbits):
    x = spiky(1)
    codec = parse_codec(f"bitround:keepbits={keepbits}")
    from diffseg.cache.codecs import zarr_filters

    group = zarr.open_group(store.store_for(tmp_path / "g", read_only=False), mode="w", zarr_format=3)
    store.create_feature_array(group, "a", 1, x.shape, np.float16, zarr_filters(codec))
    store.array(group, "a")[0] = x
    y = np.asarray(store.array(group, "a")[0])
    # rounding a float16 mantissa (10 bits) to `keepbits` moves a value by at most half the spacing of
    # the kept grid, 2^(e - keepbits - 1) <= 2^-(keepbits + 1) |x| for |x| >= 2^e (normal numbers)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    assert np.all(np.abs(yf - xf) <= 2.0 ** -(keepbits + 1) * np.abs(xf))
    assert np.array_equal(y[x == 0], x[x == 0])
    # the rounded values are exactly representable with keepbits mantissa bits
    mant = y.view(np.uint16) & 0x3FF
    assert np.all(mant % (1 << (10 - keepbits)) == 0)


# -- int8 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pct", [99.0, 99.9, 100.0])
def test_int8_error_is_at_most_half_a_step_and_the_clipped_tails_are_exact(pct):
    x = spiky(2)
    codec = parse_codec(f"int8:pct={pct}")
    parts = codec.encode(x)
    y = codec.decode_numpy(parts)
    S, C, h, w = x.shape
    n = h * w
    m = min(math.ceil(n * (100 - pct) / 100), (n - 1) // 2)  # per tail, from the definition
    xf = x.astype(np.float64).reshape(S, C, n)
    yf = y.astype(np.float64).reshape(S, C, n)
    for s in range(S):
        for c in range(C):
            v = np.sort(xf[s, c])
            lo, hi = v[m], v[n - 1 - m]
            step = (hi - lo) / 255
            err = np.abs(yf[s, c] - xf[s, c])
            # float32 arithmetic in the codec: a few ulps of the range on top of half a step
            assert err.max() <= step / 2 + 4 * np.finfo(np.float32).eps * max(abs(lo), abs(hi)), (s, c)
            outside = (xf[s, c] < lo) | (xf[s, c] > hi)
            assert np.array_equal(yf[s, c][outside], xf[s, c][outside])  # the clipped values are exact
            if pct < 100:
                assert outside.sum() >= 1  # the planted spikes lie outside the clip range
    assert parts[""].dtype == np.uint8 and parts[".outlier_index"].shape == (S, C, 2 * m)


def test_int8_of_a_constant_channel_is_exact():
    x = np.full((1, 2, 4, 4), 1.5, np.float16)
    codec = parse_codec("int8")
    assert np.array_equal(codec.decode_numpy(codec.encode(x)), x.astype(np.float32))


# -- pca ----------------------------------------------------------------------------------------
def test_pca_error_is_the_residual_of_the_projection():
    rng = np.random.default_rng(3)
    S, C, h, w, k = 2, 24, 8, 8, 6
    # rank-k structure plus noise plus a few spikes
    mix = rng.normal(size=(C, k))
    z = rng.normal(size=(S, k, h, w)) * np.array([8, 6, 4, 3, 2, 1.5])[None, :, None, None]
    x = (np.einsum("ck,skhw->schw", mix, z) + 0.05 * rng.normal(size=(S, C, h, w)) + 3.0).astype(np.float16)
    x[0, 5, 1, 1] = 60.0
    fit = PcaFit(C)
    fit.add(x)
    shared = fit.basis(k)
    B, mu = shared[BASIS].astype(np.float64), shared[MEAN].astype(np.float64)
    # independently: the principal subspace from numpy's SVD of the centred pixels
    X = np.moveaxis(x.astype(np.float64), 1, -1).reshape(-1, C)
    U, sv, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    P_np = Vt[:k].T @ Vt[:k]
    assert np.allclose(B.T @ B, np.eye(k), atol=1e-5)
    assert np.allclose(B @ B.T, P_np, atol=1e-4)
    codec = parse_codec(f"pca:k={k}")
    parts = codec.encode(x, shared)
    y = codec.decode_numpy(parts, shared).astype(np.float64)
    # the projection's reconstruction, computed here: mu + P (x - mu)
    xf = x.astype(np.float64)
    want = np.einsum("cd,sdhw->schw", P_np, xf - mu[:, None, None]) + mu[:, None, None]
    # coefficients are stored as float16: each moves by at most 2^-11 of itself; B is orthonormal,
    # so a pixel's reconstruction moves by at most that in the 2-norm (plus the fit's float32 basis)
    coef = np.einsum("ck,schw->skhw", B, xf - mu[:, None, None])
    bound = 2.0**-11 * np.sqrt((coef**2).sum(1)) + 1e-3 * np.sqrt((xf**2).sum(1))
    assert np.all(np.sqrt(((y - want) ** 2).sum(1)) <= bound)
    assert parts[""].shape == (S, k, h, w) and parts[""].dtype == np.float16


# -- torch decoding on the device ------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["raw", "int8", "pca:k=4"])
def test_torch_decode_of_a_batch_equals_numpy(spec):
    codec = parse_codec(spec)
    xs = [spiky(s, (2, 8, 8, 8)) for s in range(3)]
    shared = None
    if codec.name == "pca":
        fit = PcaFit(8)
        for x in xs:
            fit.add(x)
        shared = fit.basis(4)
    parts = [codec.encode(x, shared) for x in xs]
    want = np.stack([codec.decode_numpy(p, shared) for p in parts])
    batch = {s: torch.from_numpy(np.stack([p[s] for p in parts])) for s in parts[0]}
    tshared = None if shared is None else {s: torch.from_numpy(a) for s, a in shared.items()}
    got = decode(codec, batch if codec.name != "raw" else batch[""], tshared)
    assert got.dtype == torch.float32
    # float32 sums in another order: a few ulps of the largest value
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


# -- torch encoding (extraction, on its device) -------------------------------------------------------
@pytest.mark.parametrize("pct", [99.0, 99.9, 100.0])
def test_torch_int8_encode_equals_numpy(pct):
    x = spiky(4)
    codec = parse_codec(f"int8:pct={pct}")
    want = codec.encode(x)
    got = {s: t.numpy() for s, t in encode_torch(codec, torch.from_numpy(x)).items()}
    assert {s: (a.shape, a.dtype) for s, a in got.items()} == {s: (a.shape, a.dtype) for s, a in want.items()}
    for s in (CODES, OFFSET, SCALE):
        assert np.array_equal(got[s], want[s]), s
    # no ties among the spikes: the same outliers, in another order within each tail
    m = want[OUT_INDEX].shape[-1] // 2
    for lo_hi in (slice(0, m), slice(m, 2 * m)):
        assert np.array_equal(np.sort(got[OUT_INDEX][..., lo_hi], -1), np.sort(want[OUT_INDEX][..., lo_hi], -1))
    assert np.array_equal(codec.decode_numpy(got), codec.decode_numpy(want))


def test_torch_int8_encode_of_tied_tails_decodes_the_same():
    x = spiky(5, (1, 4, 8, 8))
    x[0, :, :3] = x[0, :, :3].max()  # 24 equal largest values per channel: which count as outliers is a tie
    x[0, 1] = -2.0  # a constant channel: every value a tie
    codec = parse_codec("int8:pct=95")
    want = codec.encode(x)
    got = {s: t.numpy() for s, t in encode_torch(codec, torch.from_numpy(x)).items()}
    for s in (CODES, OFFSET, SCALE):
        assert np.array_equal(got[s], want[s]), s
    assert np.array_equal(np.sort(got[OUT_VALUE], -1), np.sort(want[OUT_VALUE], -1))
    assert np.array_equal(codec.decode_numpy(got), codec.decode_numpy(want))


def test_torch_pca_encode_is_numpy_within_float16_rounding():
    x = spiky(6, (3, 16, 8, 8))
    fit = PcaFit(16)
    fit.add(x)
    shared = fit.basis(5)
    codec = parse_codec("pca:k=5")
    want = codec.encode(x, shared)[CODES]
    tshared = {s: torch.from_numpy(a) for s, a in shared.items()}
    got = encode_torch(codec, torch.from_numpy(x), tshared)[CODES].numpy()
    assert got.dtype == np.float16 and got.shape == want.shape
    # float32 sums in another order round to the same float16 or a neighbour
    assert np.all(np.abs(got.astype(np.float64) - want) <= np.spacing(np.maximum(abs(got), abs(want))))
    with pytest.raises(DiffsegError, match="overflow float16"):
        encode_torch(codec, torch.from_numpy(x), {BASIS: tshared[BASIS] * 1e4, MEAN: tshared[MEAN]})


def test_the_writer_writes_encoded_parts_as_its_own_encoding(tmp_path):
    """Parts encoded ahead (extraction, on its device) are stored byte-identical to the arrays the
    writer encodes itself; parts of the wrong shape are one DiffsegError and leave the sample pending."""
    from diffseg.cache import CacheWriter

    src, a, b = make_cache(tmp_path / "src", n=2), tmp_path / "a", tmp_path / "b"
    convert(src, "int8", a, progress=False)
    convert(src, "int8", b, progress=False)
    wa, wb = CacheWriter.open(a), CacheWriter.open(b)
    feats = {k: spiky(7, wa.shapes[k]) for k in wa.feature_names}
    label = np.zeros(wa.label_shape, np.uint8)
    wa.write_sample(0, feats, label)  # both rewrite sample 0: a encodes it, b gets it encoded
    wb.write_sample(0, wb.encoder({k: torch.from_numpy(v) for k, v in feats.items()}), label)
    assert_same_stored(a, b)
    parts = wb.encoder(feats)
    name = wb.feature_names[0]
    parts[name][SCALE] = parts[name][SCALE][:, :1]
    with pytest.raises(DiffsegError, match="part .scale"):
        wb.write_sample(1, parts, label)
    assert wb.status()[1] == 1  # refused before anything was written


# -- specs ----------------------------------------------------------------------------------------
def test_specs_parse_with_defaults_and_per_layer_overrides():
    assert normalize_spec("int8") == "int8:pct=99.9"
    assert normalize_spec("pca:k=8;up1.*=int8;cond/*=raw") == "pca:calib=16,k=8,seed=0;up1.*=int8:pct=99.9;cond/*=raw"
    got = resolve("pca:k=8;up1.*=int8;cond/*=raw", ["uncond/up1.res2", "uncond/up2.res2", "cond/up1.res2"])
    assert {k: c.name for k, c in got.items()} == {
        "uncond/up1.res2": "int8",
        "uncond/up2.res2": "pca",
        "cond/up1.res2": "raw",  # later parts win
    }
    for bad, words in [
        ("zfp", "unknown codec"),
        ("int8:bits=4", "unknown parameter"),
        ("bitround:keepbits=12", "out of range"),
        ("pca:k=x", "not a number"),
        ("int8;up1", "PATTERN=CODEC"),
    ]:
        with pytest.raises(DiffsegError, match=words):
            normalize_spec(bad)


# -- caches -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("codecs") / "raw", n=5, resolution=(128, 128))


@pytest.mark.parametrize("spec", ["bitround:keepbits=6", "int8", "pca:k=8", "int8;up1.*=pca:k=4;cond/*=raw"])
def test_converted_cache_decodes_within_the_codec_and_the_trainer_decodes_the_same(src, tmp_path, spec):
    out = tmp_path / "c"
    assert convert(src, spec, out, progress=False)["written"] == 5
    a, b = CacheReader(src), CacheReader(out)
    assert b.record.codecs["features"] == normalize_spec(spec) + "+crc32c"
    names = a.feature_names()
    assert b.feature_names() == names and all(b.array_shape(k) == a.array_shape(k) for k in names)
    for k in names:
        x, y = a.read(2, [k])[k].astype(np.float64), b.read(2, [k])[k].astype(np.float64)
        rel = np.abs(y - x).max() / np.abs(x).max()
        codec = b.codec(k)
        if codec.name == "pca":  # the projection onto the stored basis, computed here
            B, mu = (b.shared(k)[s].astype(np.float64) for s in (BASIS, MEAN))
            want = np.einsum("cd,sdhw->schw", B @ B.T, x - mu[:, None, None]) + mu[:, None, None]
            assert np.abs(y - want).max() <= 1e-2 * np.abs(x).max(), k
        else:  # int8: half a step of (hi - lo) / 255 <= 2 max|x| / 255; bitround: 2^-(keepbits+1)
            assert rel <= {"raw": 0, "bitround": 2.0**-7, "int8": 1 / 255}[codec.name], (k, rel)
    # the trainer's path: stored parts through the loader, expanded by the decoder
    layers = [n.split("/")[1] for n in names if n.startswith("uncond/")]
    plain = FeatureDataset(out, ("uncond", "cond"), layers, step_indices=[2, 0])
    coded = FeatureDataset(out, ("uncond", "cond"), layers, step_indices=[2, 0], encoded=True)
    batch = torch.utils.data.default_collate([coded[0], coded[1]])
    got = coded.decoder("cpu")(batch["feats"])
    for br in ("uncond", "cond"):
        for layer in layers:
            want = torch.stack([plain[0]["feats"][br][layer], plain[1]["feats"][br][layer]]).float()
            torch.testing.assert_close(got[br][layer], want, rtol=1e-3, atol=1e-3)  # plain rounds to float16


def test_convert_resumes_and_refuses_another_codec(src, tmp_path):
    out = tmp_path / "c"
    convert(src, "int8", out, progress=False)
    (out / "status" / "c" / "3").unlink()  # sample 3 pending again, as after a kill
    pack = CacheReader(out).packing.slots["uncond/up2.res2"].pack
    (out / f"{pack}.scale" / "c" / "3" / "0" / "0").unlink()  # and one of its parts
    assert convert(src, "int8", out, progress=False) == {"written": 1, "skipped": 0, "kept": 4}
    ref = tmp_path / "ref"
    convert(src, "int8", ref, progress=False)
    assert_same_stored(out, ref)
    with pytest.raises(DiffsegError, match="was extracted with codecs.features=int8:pct=99.9"):
        convert(src, "pca:k=4", out, progress=False)


def stored_arrays(path) -> dict[str, bytes]:
    """Every stored array of a cache as bytes (codes, scales, outliers, bases: not decoded)."""
    group = store.open_group(path)
    return {k: np.asarray(a[...]).tobytes() for k, a in group.members(max_depth=None) if isinstance(a, zarr.Array)}


def assert_same_stored(a, b):
    sa, sb = stored_arrays(a), stored_arrays(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k] == sb[k], f"{k} differs"
