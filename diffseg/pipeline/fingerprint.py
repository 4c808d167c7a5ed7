"""Model fingerprint: one sha256 over what changes the features (docs/design/method.md §1).

fingerprint = sha256 of, per component in a fixed order (unet, vae, text_encoder,
tokenizer, scheduler): its config as sorted JSON (volatile keys such as
`_diffusers_version`, `_name_or_path`, `transformers_version` and dtype keys removed),
and for the networks a weight digest.

Weight digest = sha256 over the lines "name shape sha256(float32 bytes)" in sorted name
order. It is computed from the weights *as stored*: from the in-memory state dict for
built-ins (built in fp32 on CPU, before any cast) and from the `.safetensors` files for
models on disk (read with `safe_open`, never from the cast model). The two agree for the
same weights, so `tiny` in memory and `tiny` saved and loaded by path share a
fingerprint, and the dtype/device a run uses never enter it.

Hashing a 3.5 GB checkpoint costs several seconds, so results are kept in small JSON
sidecars under `$DIFFSEG_CACHE_DIR` (default `$XDG_CACHE_HOME/diffseg` or
`~/.cache/diffseg`) `/fingerprints/`: per safetensors file (per-tensor digests) keyed by
the file's resolved path, size and mtime_ns, and per built-in keyed by name, seed,
config and torch/diffusers/transformers versions. A changed key recomputes; an
unwritable cache dir only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from diffseg.core.atomic import atomic_write
from diffseg.core.paths import user_cache_dir

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_VOLATILE = {
    "_diffusers_version",
    "_name_or_path",
    "_commit_hash",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "_attn_implementation_autoset",
    "_use_default_values",
    "_class_name",
    "architectures",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "use_cache",
}


def clean_config(config: Mapping) -> dict:
    """A config without volatile keys, recursively, with tuples as lists (JSON-stable)."""

    def clean(v):
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items() if k not in _VOLATILE}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, torch.dtype):
            return str(v)
        return v

    return clean(dict(config))


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's values as contiguous float32 CPU bytes."""
    t32 = t.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(t32.numpy().data).hexdigest()  # (buffer, no copy)


def _entry(name: str, t: torch.Tensor) -> tuple[str, list[int], str]:
    return name, list(t.shape), tensor_digest(t)


def weights_digest(entries: Iterable[tuple[str, list[int], str]]) -> str:
    """Combine per-tensor (name, shape, digest) entries, order-independent."""
    h = hashlib.sha256()
    for name, shape, digest in sorted(entries):
        h.update(f"{name} {shape} {digest}\n".encode())
    return h.hexdigest()


def state_dict_digest(module: torch.nn.Module) -> str:
    """Weight digest of an in-memory module (built-ins, before any dtype cast)."""
    return weights_digest(_entry(k, v) for k, v in module.state_dict().items())


def _cache_dir() -> Path:
    return user_cache_dir("fingerprints")


def memo(key: dict, compute: Callable[[], Any], slot: str | None = None) -> Any:
    """`compute()`, remembered in a JSON sidecar for exactly this `key` (so a remembered value
    comes back as JSON decodes it: tuples as lists).

    The sidecar is named after `slot` (default: the key), so a new key for the same slot
    (a rewritten file) replaces the old record instead of piling up beside it.
    """
    name = json.dumps(key, sort_keys=True) if slot is None else slot
    sidecar = _cache_dir() / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".json")
    if sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            record = {}  # a torn or foreign file: recompute and overwrite
        if record.get("key") == key:
            return record["value"]
    value = compute()
    with contextlib.suppress(OSError):  # the sidecar is an optimisation: a read-only home only means rehashing
        atomic_write(sidecar, json.dumps({"key": key, "value": value}))
    return value


def _file_entries(path: Path) -> list[tuple[str, list[int], str]]:
    """Per-tensor entries of one safetensors file, remembered by path, size and mtime."""
    from safetensors import safe_open

    real = path.resolve()
    stat = real.stat()

    def compute():
        with safe_open(str(real), framework="pt") as f:
            return [_entry(name, f.get_tensor(name)) for name in f.keys()]  # noqa: SIM118 (safe_open is not iterable)

    key = {"kind": "safetensors", "path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return [tuple(e) for e in memo(key, compute, slot=str(real))]


_MEMO_MIN_PARAMS = 50_000_000  # below this, hashing is faster than trusting a sidecar


def builtin_digest(name: str, seed: int, config: Mapping, module: torch.nn.Module) -> str:
    """Weight digest of a built-in; large ones remembered per name, seed, config and versions.

    Seeded CPU initialisation is a function of exactly these (plus the CPU's vector ISA,
    which torch's samplers may use), so the sidecar spares sd21-random (3.5 GB of fp32) a
    rehash on every load; any version change rehashes. `tiny` is always hashed.
    """
    import diffusers
    import transformers

    if sum(p.numel() for p in module.parameters()) < _MEMO_MIN_PARAMS:
        return state_dict_digest(module)
    key = {
        "kind": "builtin",
        "name": name,
        "seed": seed,
        "config": clean_config(config),
        "versions": [
            torch.__version__,
            diffusers.__version__,
            transformers.__version__,
            torch.backends.cpu.get_cpu_capability(),
        ],
    }
    return memo(key, lambda: state_dict_digest(module))


def files_digest(files: Iterable[Path]) -> str:
    """Weight digest of the safetensors files one component was loaded from."""
    entries = []
    for f in files:
        entries += _file_entries(Path(f))
    return weights_digest(entries)


def tokenizer_record(tokenizer) -> dict:
    """What decides the token ids: BPE vocab and merges, special tokens, length."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    return {
        "vocab": sorted(model["vocab"].items(), key=lambda kv: kv[1]),
        "merges": [list(m) if not isinstance(m, str) else m.split(" ") for m in model["merges"]],
        "special": {k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
        "model_max_length": tokenizer.model_max_length,
    }


def fingerprint(configs: Mapping[str, Mapping], weight_digests: Mapping[str, str], tokenizer) -> str:
    """The model fingerprint (hex sha256) from component configs, weight digests and tokenizer."""
    h = hashlib.sha256()
    for name in COMPONENTS:
        if name == "tokenizer":
            record = tokenizer_record(tokenizer)
        else:
            record = {"config": clean_config(configs[name]), "weights": weight_digests.get(name)}
        h.update(name.encode() + b"\0" + json.dumps(record, sort_keys=True).encode() + b"\0")
    return h.hexdigest()
