"""A cache on an object store, end to end: `extract --dask-workers 2` into s3://, train and evaluate from
it, read it with plain zarr and dask; every array equals the same flow on a local folder, byte for
byte, and the credentials (environment only) appear in no cache, run record or output.

The S3 server is moto's on 127.0.0.1 (benchmarks/_moto.py; the `test` extra installs moto[server] and
s3fs); the endpoint and credentials reach s3fs (and the dask workers) through the standard AWS
environment variables, as they would on a cluster. gs:// goes through the same fsspec path
(gcsfs) and has no emulator here: supported, untested.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffseg.cli import app

SECRET = "diffseg-test-secret-7c1e9a"
BUCKET = "diffseg-test"
EXTRACT = ["extract", "--dataset", "demo", "--model", "tiny", "--resolution", "64x64", "--limit", "2"]
TRAIN = [
    "--fusion",
    "light",
    "--iters",
    "2",
    "--warmup",
    "0",
    "--eval-every",
    "0",
    "--read-threads",
    "0",
    "--device",
    "cpu",
]
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def s3_server():
    """A fresh moto S3 server with one bucket (MotoS3 of benchmarks/_moto.py: its `requests` counts what it
    served); the AWS environment set for it."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[test]')")
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
    from benchmarks._moto import MotoS3

    server = MotoS3(BUCKET, secret=SECRET)
    try:
        server.start()
    except OSError as err:
        server.stop()
        pytest.skip(f"the moto S3 server could not start on 127.0.0.1: {err}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server):
    """A boto3 client of the moto S3 server."""
    return s3_server.client()


def _ok(args) -> str:
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _zarr_arrays(store) -> dict[str, bytes]:
    """Every array of a cache read with plain zarr (no diffseg), as bytes."""
    import zarr

    group = zarr.open_group(store, mode="r")
    return {k: np.asarray(a[:]).tobytes() for k, a in group.members(max_depth=None) if isinstance(a, zarr.Array)}


def test_extract_train_eval_on_s3_equal_the_local_flow(s3, tmp_path):
    import dask.array
    import zarr
    from safetensors.torch import load_file

    url, url_val = f"s3://{BUCKET}/cache/demo", f"s3://{BUCKET}/cache/demo-val"
    local, local_val = tmp_path / "cache" / "demo", tmp_path / "cache" / "demo-val"
    dry = _ok([*EXTRACT, "--dry-run", "--out", url])
    assert "free space at s3://" in dry and "unknown" in dry and "dry run: nothing written" in dry
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)  # nothing written
    out = [_ok([*EXTRACT, "--dask-workers", "2", "--out", url])]
    out.append(_ok([*EXTRACT, "--split", "val", "--out", url_val]))
    assert "free space at s3://" in out[0] and "unknown" in out[0]
    _ok([*EXTRACT, "--out", local])
    _ok([*EXTRACT, "--split", "val", "--out", local_val])
    assert not Path("s3:").exists()  # the old bug: a local folder named after the scheme

    # 1. plain zarr and dask read the bucket; every array equals the local cache's bytes
    remote = _zarr_arrays(url)
    assert remote == _zarr_arrays(str(local)) and {"ids", "labels", "status", "uncond/s8"} <= set(remote)
    assert _zarr_arrays(url_val) == _zarr_arrays(str(local_val))
    lazy = dask.array.from_zarr(url, component="cond/s8")
    direct = np.asarray(zarr.open_array(str(local), path="cond/s8", mode="r")[:])
    assert np.array_equal(lazy.compute(), direct)

    # 2. train and evaluate from the bucket and from the folder: the same weights and scores
    run_s3, run_local = tmp_path / "run-s3", tmp_path / "run-local"
    out.append(_ok(["train", "--cache", url, "--eval-cache", url_val, "--out", run_s3, *TRAIN]))
    _ok(["train", "--cache", local, "--eval-cache", local_val, "--out", run_local, *TRAIN])
    a, b = load_file(run_s3 / "weights.safetensors"), load_file(run_local / "weights.safetensors")
    assert a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
    out.append(_ok(["eval", "--run", run_s3, "--cache", url_val, "--json"]))
    scored = json.loads(out[-1])
    local_scored = json.loads(_ok(["eval", "--run", run_local, "--cache", local_val, "--json"]))
    assert scored["miou"] == local_scored["miou"] and scored["cache"] == url_val
    assert json.loads((run_s3 / "caches.json").read_text())["train"]["path"] == url

    # 3. the cache tools take the URL too
    info = json.loads(_ok(["cache", "info", url, "--json"]))
    assert info["complete"] == 2 and info["path"] == url
    out.append(_ok(["cache", "verify", url]))
    shown = _ok(["cache", "show", url, "--out", tmp_path / "pictures"])
    assert shown.strip() and all(Path(p).is_file() for p in shown.split())
    again = RUNNER.invoke(app, ["cache", "migrate", url])  # reads zarr.json from the bucket
    assert again.exit_code == 1 and "already a format-3 cache" in again.output

    # 4. the secret from the environment is nowhere: cache metadata, run records, output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    meta = [s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys if k.endswith("zarr.json")]
    assert meta and not any(SECRET.encode() in m for m in meta)
    assert not any(SECRET in p.read_text() for p in run_s3.rglob("*.json*"))
    assert not any(SECRET in o for o in out)


def test_credentials_in_a_url_are_refused(tmp_path):
    result = RUNNER.invoke(app, [*EXTRACT, "--out", f"s3://key:{SECRET}@{BUCKET}/cache/x", "--dry-run"])
    assert result.exit_code == 1 and "credentials" in result.output and SECRET not in result.output


def test_file_url_is_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, [*EXTRACT, "--limit", "1", "--branches", "uncond", "--out", f"file://{tmp_path}/c"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "zarr.json").is_file() and not (tmp_path / "file:").exists()
    info = RUNNER.invoke(app, ["cache", "info", f"file://{tmp_path}/c", "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["complete"] == 1


# Storage faults on an object store (core/storage_errors.py): one line naming the cache, never a traceback.
def _fresh_s3fs():
    """s3fs keeps one file system per argument set, whatever the environment says since: drop them."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def _request(n=3):
    from test_cache_resume import request

    return request(n=n)


def test_a_missing_bucket_is_one_line_that_says_so(s3, tmp_path):
    _fresh_s3fs()
    url = "s3://no-such-bucket-diffseg/cache"
    result = RUNNER.invoke(app, [*EXTRACT, "--limit", "1", "--out", url])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert url in line and "the bucket does not exist" in line and "free space" not in line


def test_credentials_the_server_refuses_are_one_line(s3, monkeypatch):
    import moto.settings

    from diffseg.cache import CacheReader, CacheWriter
    from diffseg.cache.synthetic import make_cache
    from diffseg.core.errors import DiffsegError

    url = f"s3://{BUCKET}/faults/creds"
    make_cache(url, 2)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks keys from now on
    _fresh_s3fs()
    try:
        with pytest.raises(DiffsegError, match="access denied") as err:
            CacheWriter.create(url, *_request(2))
        assert url in str(err.value) and "credentials" in str(err.value)
        with pytest.raises(DiffsegError, match="access denied"):
            CacheReader(url)
    finally:
        monkeypatch.undo()
        _fresh_s3fs()


def test_an_unreachable_endpoint_is_one_line(s3, monkeypatch):
    import socket

    from diffseg.cache import CacheWriter
    from diffseg.core.errors import DiffsegError

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    _fresh_s3fs()
    try:
        with pytest.raises(DiffsegError, match="cannot reach the storage endpoint") as err:
            CacheWriter.create(f"s3://{BUCKET}/faults/unreachable", *_request())
        assert "AWS_ENDPOINT_URL" in str(err.value)
    finally:
        monkeypatch.undo()
        _fresh_s3fs()


def test_a_prefix_emptied_under_a_running_writer_stops_it_within_one_sample(s3):
    import numpy as np

    from diffseg.cache import CacheWriter
    from diffseg.cache.synthetic import make_cache
    from diffseg.core.errors import DiffsegError

    _fresh_s3fs()
    url, prefix = f"s3://{BUCKET}/faults/vanished", "faults/vanished/"
    make_cache(url, 3, write=1)
    writer = CacheWriter.open(url)
    assert writer.pending() == [1, 2]  # the writer has listed the prefix (s3fs keeps listings)
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in objects]})  # bucket recreated
    arrays = {k: np.zeros(writer.shapes[k], np.float16) for k in writer.feature_names}
    with pytest.raises(DiffsegError, match="the cache vanished while being written"):
        writer.write_sample(1, arrays, np.zeros(writer.label_shape, np.uint8))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}status/")  # nothing marked


def test_a_sample_of_stride_packs_is_one_object_per_pack(s3_server):
    """Format 3 on an object store: a sample of 27 layers in 2 branches is written as one object per
    pack (a branch's layers of one stride), its labels and its status, not one object per layer, and
    reading every layer back gets each of those objects once (counted by the server itself)."""
    from diffseg.cache import CacheReader
    from diffseg.cache.synthetic import make_cache

    layers = [f"up{b}.{k}{j}" for b in (1, 2, 3) for k in ("res", "blk", "xattn") for j in (0, 1, 2)]
    puts = []
    for written in (1, 2):  # two caches: what the second sample adds is one sample's objects
        before = s3_server.requests.snapshot()
        make_cache(f"s3://{BUCKET}/packs/written-{written}", 2, layers=layers, xattn_classes=4, write=written)
        puts.append(s3_server.requests.since(before)["PUT"])
    reader = CacheReader(f"s3://{BUCKET}/packs/written-2")
    packs = list(reader.packing.packs)
    assert sorted(packs) == sorted(f"{b}/s{s}" for b in ("cond", "uncond") for s in (8, 16, 32))
    assert puts[1] - puts[0] == len(packs) + 2  # + labels and status
    names = [*reader.feature_names(), "labels"]
    assert len(names) == 55
    reader.read(0, names)  # opens the arrays
    before = s3_server.requests.snapshot()
    got = reader.read(1, names)
    assert s3_server.requests.since(before)["GET"] == len(packs) + 1
    assert got["cond/up3.xattn2"].shape == (3, 4, 8, 8)
