"""Trajectory configuration: which timesteps are evaluated and saved, which U-Net layers are
tapped, and how the inversion runs (docs/design/method.md §2-3). The config is also the record written
into every cache, so it round-trips through JSON (`from_dict(to_dict(c)) == c`).

Layer names ("up{i}.res{j}", "up{i}.blk{j}", "up{i}.xattn{j}") are read by core/layers.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diffseg.core.errors import DiffsegError
from diffseg.core.layers import KINDS, N_PER_BLOCK, layer_name, parse_layer
from diffseg.core.records import from_record

ENCODE_MODES = ("mean", "sample")


@dataclass(frozen=True, kw_only=True)
class TrajectoryConfig:
    steps: tuple[int, ...]  # evaluated timesteps, ascending (clean -> noisy)
    save_steps: tuple[int, ...]  # subset of steps, in cache order (reference: 91 first)
    layers: tuple[str, ...]  # "up{i}.res{j}" | "up{i}.blk{j}" | "up{i}.xattn{j}"
    eta: float = 1.0  # stochasticity of the inversion step inside the window
    eta_window: tuple[int, int] = (10, 250)  # eta used when lo < t < hi, else 0
    encode: str = "mean"  # VAE posterior "mean" or seeded "sample"
    raw_eps: bool = False  # True: reference behaviour, model output used as eps even for v-pred
    guidance: float = 5.0  # eps_k = eps_u + guidance * (eps_text_k - eps_u)
    blk_sum: bool = False  # True: reference behaviour, cond-branch blk summed over all copies
    seed: int = 0  # root of every random draw

    def __post_init__(self):
        # Normalise list inputs (e.g. from JSON) to tuples so equality and hashing hold.
        for name in ("steps", "save_steps", "layers", "eta_window"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "steps", tuple(int(t) for t in self.steps))
        object.__setattr__(self, "save_steps", tuple(int(t) for t in self.save_steps))
        object.__setattr__(self, "eta_window", tuple(int(t) for t in self.eta_window))
        validate(self)

    @property
    def last_index(self) -> int:
        """Index in `steps` of the last evaluation any saved feature needs."""
        return max(self.steps.index(t) for t in self.save_steps)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if any(parse_layer(n)[1] == k for n in self.layers))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrajectoryConfig:
        return from_record(cls, d)  # lists become tuples in __post_init__


def _nonempty_unique(name: str, values: tuple, empty: str) -> None:
    if not values:
        raise DiffsegError(f"{name}: {empty}")
    if len(set(values)) != len(values):
        raise DiffsegError(f"{name} has duplicates: {list(values)}")


def validate(cfg: TrajectoryConfig) -> None:
    """Raise DiffsegError naming the first bad value."""
    if not cfg.steps:
        raise DiffsegError("steps: empty list of evaluated timesteps")
    for t in cfg.steps:
        if t < 0:
            raise DiffsegError(f"steps: negative timestep {t}")
    for a, b in zip(cfg.steps, cfg.steps[1:]):
        if b <= a:
            raise DiffsegError(f"steps must be ascending and unique: {b} follows {a}")
    _nonempty_unique("save_steps", cfg.save_steps, "empty list of saved timesteps")
    for t in cfg.save_steps:
        if t not in cfg.steps:
            raise DiffsegError(f"save step {t} is not an evaluated step ({list(cfg.steps)})")
    _nonempty_unique("layers", cfg.layers, "empty list")
    for name in cfg.layers:
        parse_layer(name)
    if len(cfg.eta_window) != 2 or cfg.eta_window[0] >= cfg.eta_window[1]:
        raise DiffsegError(f"eta_window must be (lo, hi) with lo < hi: {list(cfg.eta_window)}")
    if cfg.eta < 0:
        raise DiffsegError(f"eta must be >= 0: {cfg.eta}")
    if cfg.encode not in ENCODE_MODES:
        raise DiffsegError(f"encode must be one of {', '.join(ENCODE_MODES)}: {cfg.encode!r}")


def positions_of(layers) -> tuple[tuple[int, int], ...]:
    """Ordered unique (i, j) positions of a list of layer names."""
    out: list[tuple[int, int]] = []
    for name in layers:
        i, _, j = parse_layer(name)
        if (i, j) not in out:
            out.append((i, j))
    return tuple(out)


def layers_at(positions, kinds) -> tuple[str, ...]:
    """Layer names for every kind at every (i, j) position, kind-major:
    layers_at([(1, 2), (2, 2)], ["res", "xattn"]) -> (up1.res2, up2.res2, up1.xattn2, up2.xattn2)."""
    for k in kinds:
        if k not in KINDS:
            raise DiffsegError(f"unknown feature kind {k!r} (expected {', '.join(KINDS)})")
    names = tuple(layer_name(i, k, j) for k in kinds for i, j in positions)
    for n in names:
        parse_layer(n)
    return names


_ALL_POS = tuple((i, j) for i in (1, 2, 3) for j in range(N_PER_BLOCK))
_REFERENCE_STEPS = tuple(range(24)) + (26, 30, 34, 40, 45, 52, 60, 69, 80, 91)
_FIVE_STEPS = (0, 1, 20, 40, 60)


def preset(name: str) -> TrajectoryConfig:
    """The named presets of docs/design/method.md §3."""
    full = layers_at(_ALL_POS, ("res", "blk"))
    if name == "reference":
        return TrajectoryConfig(steps=_REFERENCE_STEPS, save_steps=(91, 52, 30, 22, 18, 14, 11, 7, 3), layers=full)
    if name == "5step":
        return TrajectoryConfig(steps=_FIVE_STEPS, save_steps=_FIVE_STEPS, layers=full)
    if name == "1step":
        return TrajectoryConfig(steps=(0,), save_steps=(0,), layers=full)
    if name == "lite":
        return TrajectoryConfig(
            steps=_FIVE_STEPS, save_steps=(60, 20, 1), layers=layers_at(((1, 2), (2, 2), (3, 2)), ("res",))
        )
    raise DiffsegError(f"unknown preset {name!r} (expected {', '.join(PRESETS)})")


PRESETS = ("reference", "5step", "1step", "lite")


def resolve(name: str, steps=None, save_steps=None, layers=None, kinds=None, **overrides) -> TrajectoryConfig:
    """A preset with CLI overrides applied (`--steps`, `--save-steps`, `--layers`, `--kinds`;
    other fields such as eta, seed, guidance by keyword).

    - steps without save_steps: the preset's saved steps if all are still evaluated, else all steps.
    - kinds: those kinds at the positions of `layers` (or of the preset's layers).
    """
    base = preset(name)
    steps_t = tuple(base.steps if steps is None else steps)
    if save_steps is not None:
        save_t = tuple(save_steps)
    elif steps is not None and not set(base.save_steps) <= set(steps_t):
        save_t = steps_t
    else:
        save_t = base.save_steps
    layers_t = tuple(base.layers if layers is None else layers)
    if kinds is not None:
        layers_t = layers_at(positions_of(layers_t), tuple(kinds))
    return dataclasses.replace(base, steps=steps_t, save_steps=save_t, layers=layers_t, **overrides)
