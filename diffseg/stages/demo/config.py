"""The demo's sizes (`diffseg demo --size small|full`) and its target splits, as one frozen config."""

from __future__ import annotations

from dataclasses import dataclass

from diffseg.core.errors import DiffsegError

TARGETS = ("val", "val-night", "val-fog")


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    size: str  # "small" | "full"
    resolution: int  # square image side fed to the VAE (px)
    train_images: int
    target_images: int  # per target split
    preset: str
    steps: str | None  # override of the preset's evaluated steps (None: the preset's)
    save_steps: str | None
    kinds: str
    iters: int  # main run
    ablation_iters: int  # each ablation cell
    batch_size: int
    lr: float
    warmup: int
    fusion: str
    pictures_per_target: int


def demo_config(size: str) -> DemoConfig:
    """`full` fits in about 10 minutes on 2 CPU cores; `small` is the CI-sized run."""
    if size == "full":
        return DemoConfig(
            size="full",
            resolution=128,
            train_images=48,
            target_images=16,
            preset="5step",
            steps=None,
            save_steps="60,20,1",
            kinds="res,blk,xattn",
            iters=300,
            ablation_iters=80,
            batch_size=4,
            lr=6e-4,
            warmup=25,
            fusion="light",
            pictures_per_target=4,
        )
    if size == "small":
        return DemoConfig(
            size="small",
            resolution=64,
            train_images=6,
            target_images=3,
            preset="5step",
            steps="0,1,20",
            save_steps="20,1",
            kinds="res,blk,xattn",
            iters=12,
            ablation_iters=6,
            batch_size=2,
            lr=6e-4,
            warmup=2,
            fusion="light",
            pictures_per_target=2,
        )
    raise DiffsegError(f"unknown demo size {size!r}: small or full")
