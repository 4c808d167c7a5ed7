"""Load the frozen diffusion model: built-ins, a diffusers directory, or a cached hub id.

`load_models(spec)` resolves `spec` (docs/design/architecture.md, Models):
  "tiny" | "sd21-random"   built-in seeded random models (diffseg.pipeline.builtin)
  "mini"                   the built-in trained model, a diffusers directory inside the package
  an existing directory    diffusers layout unet/ vae/ text_encoder/ tokenizer/ scheduler/,
                           weights from .safetensors only (nothing is unpickled)
  anything else            a hub id, resolved from the local Hugging Face cache only:
                           diffseg never downloads
Every component is frozen (`requires_grad_(False)`, `eval()`). The scheduler is always a
DDIMScheduler (the inversion is DDIM); its config comes from the model.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffseg.core.errors import DiffsegError
from diffseg.pipeline import fingerprint as fp
from diffseg.pipeline.builtin import BUILTIN_NAMES, BUILTIN_SEED, SD21_UNET, SHIPPED, TINY_UNET, build_builtin

if TYPE_CHECKING:  # imported lazily at run time (load_models): `diffseg --help` stays instant
    # from their modules: mypy reads `from diffusers import X` as diffusers' no-torch dummy classes
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

_WEIGHTED = ("unet", "vae", "text_encoder")
_CONFIG_FILE = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}


@dataclass(frozen=True, kw_only=True, eq=False)
class FrozenModels:
    """The frozen components of one Stable Diffusion model, on one device and dtype."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    name: str  # the spec it was loaded from ("tiny", a path, a hub id)
    fingerprint: str  # hex sha256 of configs + stored weights (diffseg.pipeline.fingerprint)
    device: torch.device
    dtype: torch.dtype

    @property
    def prediction_type(self) -> str:
        """ "epsilon" or "v_prediction" (SD 2.1-768), from the scheduler config."""
        return self.scheduler.config["prediction_type"]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the diffusers layout (safetensors weights, vocab.json + merges.txt).

        Weights are written in the models' current dtype: saving an fp16-loaded model stores
        fp16-rounded weights, which (rightly) fingerprint differently from the fp32 original.
        """
        directory = Path(directory)
        with quiet_hf():
            for name in _WEIGHTED:
                getattr(self, name).save_pretrained(directory / name, safe_serialization=True)
            tok_dir = directory / "tokenizer"
            self.tokenizer.save_pretrained(tok_dir)
            # transformers 5 writes only tokenizer.json; keep the classic CLIP files too.
            self.tokenizer.backend_tokenizer.model.save(str(tok_dir))
            self.scheduler.save_pretrained(directory / "scheduler")
        return directory


def load_models(spec: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> FrozenModels:
    """Resolve `spec` and return its frozen components on `device` in `dtype`."""
    device = torch.device(device)
    with quiet_hf():
        if spec in BUILTIN_NAMES:
            parts = build_builtin(spec, seed=BUILTIN_SEED)
            digests = {
                k: fp.builtin_digest(f"{spec}/{k}", BUILTIN_SEED, _config_of(parts[k]), parts[k]) for k in _WEIGHTED
            }
        else:
            parts, digests = _load_directory(_resolve_directory(spec), dtype)
        configs = {k: _config_of(parts[k]) for k in (*_WEIGHTED, "scheduler")}
        fingerprint = fp.fingerprint(configs, digests, parts["tokenizer"])
        for k in _WEIGHTED:
            _freeze(parts[k], device, dtype)
    return FrozenModels(**parts, name=spec, fingerprint=fingerprint, device=device, dtype=dtype)


@contextlib.contextmanager
def quiet_hf():
    """Silence diffusers/transformers info logs and progress bars while loading or saving.

    (Their advice, e.g. "install accelerate", is not actionable for diffseg users; errors
    still propagate as exceptions.)
    """
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    saved = (dlog.get_verbosity(), tlog.get_verbosity(), dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error(), tlog.set_verbosity_error(), dlog.disable_progress_bar(), tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(saved[0])
        tlog.set_verbosity(saved[1])
        if saved[2]:
            dlog.enable_progress_bar()
        if saved[3]:
            tlog.enable_progress_bar()


def _freeze(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """requires_grad_(False), eval(), move; and own every CPU tensor at an aligned address.

    safetensors maps the file, leaving tensors at arbitrary offsets; CPU kernels then pick
    other SIMD paths and the outputs differ in the last bits from the same weights built in
    memory. A copy makes a loaded model bit-identical to its in-memory twin.
    """
    module.requires_grad_(False).eval()
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)  # (diffusers warns on any to(dtype=...), even a no-op)
    module.to(device=device)
    for t in (*module.parameters(), *module.buffers()):
        if t.device.type == "cpu" and t.data_ptr() % 64:
            t.data = t.data.clone()


def _config_of(component) -> dict:
    config = component.config
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def unet_config(spec: str) -> dict:
    """The U-Net config of a model spec without loading any weights (a dry run's layer sizes)."""
    builtin = {"tiny": TINY_UNET, "sd21-random": SD21_UNET}
    if spec in builtin:
        return dict(builtin[spec])
    path = _resolve_directory(spec) / "unet" / "config.json"
    if not path.is_file():
        raise DiffsegError(f"{path} not found: --model needs a diffusers directory with unet/config.json")
    return json.loads(path.read_text())


def _resolve_directory(spec: str) -> Path:
    """A shipped built-in, a spec naming a directory on disk, or a hub id found in the local HF cache."""
    if spec in SHIPPED:
        return _shipped_directory(spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DiffsegError(
                f"model path {path} is a file; --model takes a diffusers directory "
                "(unet/ vae/ text_encoder/ tokenizer/ scheduler/), tiny or sd21-random"
            )
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise DiffsegError(
            f"model directory {path} does not exist; pass --model tiny, --model sd21-random "
            "or --model /path/to/diffusers_dir"
        )
    return _from_hf_cache(spec)


def _shipped_directory(name: str) -> Path:
    path = SHIPPED[name]
    if not (path / "unet" / "config.json").is_file():
        raise DiffsegError(
            f"the built-in {name!r} model's weights are not installed ({path} is missing); "
            f"reproduce them with `diffseg pretrain` and pass --model <out>/model, or use --model tiny"
        )
    return path


def hf_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return xdg / "huggingface" / "hub"


def _from_hf_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hf_cache_dir()
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        raise DiffsegError(
            f"model {repo_id!r} is not in the local Hugging Face cache (looked in {cache}) and is not a "
            "directory; diffseg never "
            "downloads: pass --model tiny, --model sd21-random or --model /path/to/diffusers_dir"
        ) from None


def _weight_files(directory: Path, component: str) -> tuple[list[Path], str | None]:
    """The safetensors files of one component and the diffusers variant they use."""
    sub = directory / component
    files = sorted(f for f in sub.glob("*.safetensors") if len(f.name.split(".")) == 2)
    if files:
        return files, None
    fp16 = sorted(sub.glob("*.fp16.safetensors"))
    if fp16:
        return fp16, "fp16"
    others = sorted(f.name for f in sub.iterdir() if f.is_file() and f.suffix in (".bin", ".pt", ".ckpt", ".pth"))
    found = f" (found {', '.join(others)}, which diffseg does not unpickle)" if others else ""
    raise DiffsegError(f"{sub}: no .safetensors weights{found}; convert the checkpoint to safetensors")


def _check_layout(directory: Path) -> None:
    missing = [c for c in (*_CONFIG_FILE, "tokenizer") if not (directory / c).is_dir()]
    if missing:
        raise DiffsegError(
            f"{directory}: not a diffusers model directory, missing {', '.join(m + '/' for m in missing)}"
            " (needs unet/ vae/ text_encoder/ tokenizer/ scheduler/)"
        )
    for comp, name in _CONFIG_FILE.items():
        if not (directory / comp / name).is_file():
            raise DiffsegError(f"{directory / comp}: missing {name}")
    tok = directory / "tokenizer"
    if not (tok / "tokenizer.json").is_file() and not (
        (tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()
    ):
        raise DiffsegError(f"{tok}: missing vocab.json + merges.txt (or tokenizer.json)")


def _load_directory(directory: Path, dtype: torch.dtype) -> tuple[dict, dict]:
    """Components (in `dtype`, on CPU) and weight digests of a diffusers directory."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from safetensors import SafetensorError
    from transformers import CLIPTextModel, CLIPTokenizer

    _check_layout(directory)
    files = {c: _weight_files(directory, c) for c in _WEIGHTED}
    variant = {c: files[c][1] for c in _WEIGHTED}
    text_variant: dict[str, Any] = {"variant": variant["text_encoder"]} if variant["text_encoder"] else {}
    loaders = {
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            directory,
            subfolder="unet",
            use_safetensors=True,
            low_cpu_mem_usage=True,
            variant=variant["unet"],
            torch_dtype=dtype,
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(
            directory,
            subfolder="vae",
            use_safetensors=True,
            low_cpu_mem_usage=True,
            variant=variant["vae"],
            torch_dtype=dtype,
        ),
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            directory / "text_encoder",
            use_safetensors=True,
            dtype=dtype,
            **text_variant,
        ),
        "tokenizer": lambda: CLIPTokenizer.from_pretrained(directory / "tokenizer"),
        "scheduler": lambda: DDIMScheduler.from_pretrained(directory, subfolder="scheduler"),
    }
    parts = {}
    for name, load in loaders.items():
        try:
            parts[name] = load()
        except (OSError, ValueError, SafetensorError) as err:  # corrupt or inconsistent files
            raise DiffsegError(f"{directory / name}: cannot load ({type(err).__name__}: {err})") from err
    digests = {c: fp.files_digest(files[c][0]) for c in _WEIGHTED}
    return parts, digests
