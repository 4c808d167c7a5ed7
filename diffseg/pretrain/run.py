"""Pre-train `mini` end to end: images -> autoencoder -> latents -> U-Net + text encoder -> decoder -> model dir.

Everything lands in one working directory (`out`): the rendered images, one resumable
checkpoint per phase, the encoded latents, `log.txt`, and `model/`, a diffusers directory
(fp16 safetensors) that `--model DIR` loads, and that is shipped as the built-in `mini`.
Run it again on the same directory to resume after a kill.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch

from diffseg.core.errors import DiffsegError
from diffseg.pretrain import checkpoint as ck
from diffseg.pretrain.config import PretrainConfig
from diffseg.pretrain.data import ImageSource, load_or_render
from diffseg.pretrain.decoder import train_decoder
from diffseg.pretrain.unet import build_unet_and_text, train_unet
from diffseg.pretrain.vae import build_vae, encode_all, set_scaling_factor, train_vae


def pretrain(cfg: PretrainConfig, out: str | os.PathLike, source: ImageSource, echo: bool = True) -> Path:
    """Run (or resume) every phase on `source`'s images; returns the exported model directory `out/model`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _pretrain(cfg, out, source, echo)
    finally:
        torch.set_num_threads(threads)


def _pretrain(cfg: PretrainConfig, out: Path, source: ImageSource, echo: bool) -> Path:
    from diffseg.pipeline.tokenizer import build_tokenizer

    logfile = (out / "log.txt").open("a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        logfile.write(line + "\n")
        logfile.flush()
        if echo:
            print(line, flush=True)

    times = {}
    t = time.perf_counter()
    data = load_or_render(out / "images.npz", source, cfg)
    times["images"] = time.perf_counter() - t
    log(f"images: {len(data.images)} at {cfg.size} px ({times['images']:.0f} s)")
    t = time.perf_counter()
    vae = train_vae(cfg, data, out, log)
    times["vae"] = time.perf_counter() - t
    t = time.perf_counter()
    latents = _latents(vae, data, out)
    times["encode"] = time.perf_counter() - t
    log(f"latents: {tuple(latents.shape)}, scaling factor {vae.config['scaling_factor']:.4f} ({times['encode']:.0f} s)")
    t = time.perf_counter()
    tokenizer = build_tokenizer()
    unet, text_encoder = train_unet(cfg, data, latents * vae.config["scaling_factor"], tokenizer, out, log)
    times["unet"] = time.perf_counter() - t
    t = time.perf_counter()
    vae = train_decoder(cfg, data, vae, out, log)
    times["decoder"] = time.perf_counter() - t
    model_dir = export(out / "model", unet, vae, text_encoder, tokenizer)
    log(f"exported {model_dir}; this run's seconds per phase: {json.dumps({k: round(v) for k, v in times.items()})}")
    logfile.close()
    return model_dir


def _check_config(out: Path, cfg: PretrainConfig) -> None:
    """A working directory belongs to one config: resuming with another would mix recipes."""
    path = out / "config.json"
    record = json.loads(json.dumps(cfg.to_dict()))
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(k for k in record if old.get(k) != record[k])
            raise DiffsegError(
                f"{out} was pre-trained with another config (differs in {', '.join(diff)}); use a new --out"
            )
    else:
        path.write_text(json.dumps(record, indent=2))


def _latents(vae, data, out: Path) -> torch.Tensor:
    """Unscaled posterior means of every image, encoded once (and the scaling factor set)."""
    path = out / "latents.pt"
    if (state := ck.load(path)) is not None:
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        return state["latents"]
    latents = encode_all(vae, data.images)
    factor = set_scaling_factor(vae, latents)
    ck.save(path, dict(latents=latents, scaling_factor=factor))
    return latents


def export(directory: Path, unet, vae, text_encoder, tokenizer) -> Path:
    """A diffusers model directory with fp16 safetensors weights and SD 2.1's DDIM scheduler."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    from diffseg.pipeline.builtin import SD21_SCHEDULER
    from diffseg.pipeline.models import FrozenModels, quiet_hf

    with quiet_hf():  # (diffusers warns on any to(dtype=...))
        parts = {
            k: copy.deepcopy(m).to(torch.float16)
            for k, m in dict(unet=unet, vae=vae, text_encoder=text_encoder).items()
        }
    models = FrozenModels(
        **parts,
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(**SD21_SCHEDULER),
        name="mini",
        fingerprint="",
        device=torch.device("cpu"),
        dtype=torch.float16,
    )
    return models.save_pretrained(directory)


def export_checkpoint(out: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Export the current (possibly unfinished) checkpoints of a working directory, to inspect them."""
    from diffseg.pipeline.tokenizer import build_tokenizer

    out = Path(out)
    cfg = PretrainConfig(**_config_fields(json.loads((out / "config.json").read_text())))
    tokenizer = build_tokenizer()
    vae = build_vae(cfg)
    vae_state = ck.load(out / "vae.ckpt")
    assert vae_state is not None, f"{out}: no autoencoder checkpoint yet"
    vae.load_state_dict(vae_state["model"])
    if (dec := ck.load(out / "decoder.ckpt")) is not None:
        vae.load_state_dict(dec["model"])
    if (lat := ck.load(out / "latents.pt")) is not None:
        vae.register_to_config(scaling_factor=lat["scaling_factor"])
    unet, text_encoder = build_unet_and_text(cfg, tokenizer)
    if (state := ck.load(out / "unet.ckpt")) is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text"])
    return export(Path(directory), unet, vae, text_encoder, tokenizer)


def _config_fields(record: dict) -> dict:
    record = dict(record)
    record["text"] = tuple(record["text"])
    for key in ("unet", "vae"):
        record[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in record[key].items()}
    return record
