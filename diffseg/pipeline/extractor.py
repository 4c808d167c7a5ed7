"""FeatureExtractor: one image -> the features of its inversion trajectory (docs/design/method.md §2-5).

Two branches:
- uncond: the latent walks the DDIM inversion with the unconditional prompt ("" or the
  label-free class list), one U-Net sample per step (B images batched in uncond_batch).
- cond: per step one batched U-Net call over [uncond, class_1..class_n] (the active classes
  present in the label); eps_k = eps_u + guidance (eps_text_k - eps_u); every copy takes its own
  inversion step from the same x_t with its own noise; the next latent is the MultiDiffusion
  masked average. res/blk come from the uncond copy (or, with blk_sum, the reference's sum over
  its n + 2 copies: 2 b_uncond + sum_k b_k; 2 b_uncond in uncond), xattn of class k from copy k
  (zeros for classes absent from the label).
Both run the one loop `_walk`; a `_Rows` says what differs (the prompt copies per U-Net call,
guidance, the masked average, which rows a feature comes from). Every random draw is seeded by
(cfg.seed, content key of the pixels, view, branch, t, copy) (seeding.SCHEME): the sample id names
the sample in messages only, so the same image gives the same features under any name. Only saved steps are kept, and the walk stops after the
last step any saved feature needs.

Suffixes: B images, K prompt copies, C channels, H/W latent, S saved steps, T tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffseg.core.classes import CITYSCAPES, ClassTable, present_classes
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec, layer_specs, parse_layer
from diffseg.pipeline import prompts, seeding
from diffseg.pipeline.attention import configure_attention
from diffseg.pipeline.config import TrajectoryConfig
from diffseg.pipeline.encode import encode
from diffseg.pipeline.inversion import eta_at, inversion_step, model_eps
from diffseg.pipeline.multidiffusion import class_masks, masked_average
from diffseg.pipeline.taps import FeatureTaps, class_maps

GRAD_MODES = ("inference", "no_grad")


def _grad_context(grad_mode: str):
    if grad_mode == "inference":
        return torch.inference_mode()
    if grad_mode == "no_grad":
        return torch.no_grad()
    raise DiffsegError(f"unknown grad mode {grad_mode!r} (expected {', '.join(GRAD_MODES)})")


class FeatureExtractor:
    def __init__(
        self,
        models,
        cfg: TrajectoryConfig,
        classes=tuple(range(CITYSCAPES.num_classes)),
        descriptions: dict | None = None,
        uncond_prompt: str = "empty",
        table: ClassTable = CITYSCAPES,
    ):
        self.models, self.cfg, self.table = models, cfg, table
        self.classes = tuple(int(c) for c in classes)
        k = table.num_classes
        for c in self.classes:
            if not 0 <= c < k:
                raise DiffsegError(f"unknown class train id {c} (expected 0..{k - 1})")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise DiffsegError(f"active classes must be unique and non-empty: {list(self.classes)}")
        self.uncond_mode = uncond_prompt
        self.descriptions = prompts.check_descriptions(descriptions or {})
        self._check_model()
        if "xattn" in cfg.kinds and uncond_prompt != "classes":
            raise DiffsegError(
                "xattn layers need --uncond-prompt classes: with the empty prompt the "
                "unconditional branch names no classes, so it has no cross-attention maps"
            )
        # SDPA/xformers first; FeatureTaps later swaps only the capturing attn2 processors.
        self.attention_backend = configure_attention(models.unet, models.device)  # recorded in the cache
        self.alphas_cumprod = models.scheduler.alphas_cumprod.double().tolist()
        tok = models.tokenizer
        self.text = prompts.TextEmbeddings(tok, models.text_encoder, models.device, models.dtype)
        self.uncond_text = prompts.uncond_prompt(uncond_prompt, self.classes, table)
        self.class_text = {c: prompts.class_prompt(c, self.descriptions, table) for c in self.classes}
        self.class_pos = {
            c: prompts.name_positions_in_class_prompt(tok, self.class_text[c], c, table) for c in self.classes
        }
        self.uncond_pos = (
            prompts.class_token_positions(tok, self.uncond_text, self.classes, table)
            if uncond_prompt == "classes"
            else {}
        )

    def _check_model(self):
        n_t = len(self.models.scheduler.alphas_cumprod)
        for t in self.cfg.steps:
            if t >= n_t:
                raise DiffsegError(f"timestep {t} is beyond the scheduler's {n_t} training timesteps")
        with FeatureTaps(self.models.unet, self.cfg.layers):
            pass  # resolves every layer name on this U-Net (DiffsegError if one is missing)

    # -- description ------------------------------------------------------------------------
    def layer_specs(self, resolution) -> dict[str, LayerSpec]:
        """Per layer: kind, stride, channels and (h, w) at resolution (W, H), from the U-Net's config."""
        vae_stride = 2 ** (len(self.models.vae.config.block_out_channels) - 1)
        return layer_specs(self.models.unet.config, self.cfg.layers, resolution, len(self.classes), vae_stride)

    def prompt_record(self) -> dict:
        """The text side, for cache attributes."""
        return {
            "template": prompts.TEMPLATE,
            "uncond_prompt": self.uncond_mode,
            "uncond_text": self.uncond_text,
            "classes": [self.table.names[c] for c in self.classes],
            "class_prompts": {self.table.names[c]: self.class_text[c] for c in self.classes},
        }

    # -- public numpy API (inference mode) -----------------------------------------------------
    def latent(self, image: np.ndarray, view: int = 0) -> torch.Tensor:
        """image uint8 [H, W, 3] -> its VAE latent [1, 4, H/8, W/8] (seeded as in the trajectory):
        computed ahead (extraction's loader thread) and passed to the methods below as `latents`."""
        with torch.inference_mode():
            return self._encode(image[None], [(seeding.content_key(image), int(view))])

    def uncond(self, image: np.ndarray, sample_id: str, view: int = 0, latent=None, host: bool = True) -> dict:
        """image uint8 [H, W, 3] -> {layer: float16 [S, C, h, w]} (numpy; host=False: tensors on the
        model device, for extraction to encode there before the copy)."""
        out = self.extract_tensors(
            "uncond", image[None], [sample_id], views=[view], grad_mode="inference", latents=latent, dtype=torch.float16
        )
        return {k: _out(v[0], host) for k, v in out.items()}

    def uncond_batch(self, images: np.ndarray, sample_ids, views=None, latents=None, host: bool = True) -> dict:
        """images uint8 [B, H, W, 3] in one U-Net call per step -> {layer: float16 [B, S, C, h, w]}."""
        out = self.extract_tensors(
            "uncond", images, list(sample_ids), views=views, grad_mode="inference", latents=latents, dtype=torch.float16
        )
        return {k: _out(v, host) for k, v in out.items()}

    def cond(
        self, image: np.ndarray, label: np.ndarray, sample_id: str, view: int = 0, latent=None, host: bool = True
    ) -> dict:
        """image uint8 [H, W, 3], label uint8 [H, W] train ids -> {layer: float16 [S, C, h, w]}."""
        out = self.extract_tensors(
            "cond",
            image[None],
            [sample_id],
            labels=label[None],
            views=[view],
            grad_mode="inference",
            latents=latent,
            dtype=torch.float16,
        )
        return {k: _out(v[0], host) for k, v in out.items()}

    def joint(
        self, images: np.ndarray, labels: np.ndarray, sample_ids, views=None, latents=None, host: bool = True
    ) -> dict[str, dict]:
        """Both branches of B images walked together: each step's uncond rows (B) and every image's cond
        rows (1 + its classes) in one U-Net call -> {"uncond"|"cond": {layer: float16 [B, S, C, h, w]}}.
        The same trajectories as uncond_batch and cond, rounded as the larger call rounds."""
        views = [0] * len(images) if views is None else [int(v) for v in views]
        if not len(images) == len(labels) == len(sample_ids) == len(views):
            raise DiffsegError(
                f"{len(images)} images but {len(labels)} labels, {len(sample_ids)} ids, {len(views)} views"
            )
        images = np.asarray(images)
        with torch.inference_mode():
            if latents is None:  # one VAE call per image, as the extraction's loader encodes them
                latents = torch.cat(
                    [self._encode(img[None], [(seeding.content_key(img), v)]) for img, v in zip(images, views)]
                )
            groups = [self._uncond_rows(images, views, latents)]
            groups += [
                self._cond_rows(images[b : b + 1], labels[b], sample_ids[b], views[b], latents[b : b + 1])
                for b in range(len(images))
            ]
            outs = self._walk([x for x, _ in groups], [rows for _, rows in groups], torch.float16)
        cond = {k: torch.cat([o[k] for o in outs[1:]]) for k in outs[0]}
        return {
            "uncond": {k: _out(v, host) for k, v in outs[0].items()},
            "cond": {k: _out(v, host) for k, v in cond.items()},
        }

    # -- tensor API (also for online use under no_grad) ------------------------------------------
    def extract_tensors(
        self,
        branch: str,
        images,
        sample_ids,
        labels=None,
        views=None,
        grad_mode: str = "no_grad",
        latents=None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, torch.Tensor]:
        """images uint8 [B, H, W, 3] -> {layer: `dtype` [B, S, C, h, w]} on the model device.
        dtype: what each saved feature is kept in as the walk goes (the numpy API's float16 holds half
        the bytes, with the values a float32 result rounds to).
        views: the view index of each image (a training cache's "#v<k>"; default 0), part of its
        noise seeds. grad_mode "no_grad" returns ordinary tensors (usable later in autograd graphs),
        "inference" runs under torch.inference_mode. latents: [B, 4, H/8, W/8] from latent()
        (default: encoded here, all B in one VAE call)."""
        if len(images) != len(sample_ids):
            raise DiffsegError(f"{len(images)} images but {len(sample_ids)} sample ids")
        views = [0] * len(images) if views is None else [int(v) for v in views]
        if len(views) != len(images):
            raise DiffsegError(f"{len(images)} images but {len(views)} view indices")
        images = np.asarray(images)
        with _grad_context(grad_mode):
            if branch == "uncond":
                return self._uncond(images, list(sample_ids), views, latents, dtype)
            if branch == "cond":
                if labels is None or len(labels) != len(images):
                    raise DiffsegError("the cond branch needs one label per image")
                per = [
                    self._cond(
                        images[b : b + 1],
                        labels[b],
                        sample_ids[b],
                        views[b],
                        None if latents is None else latents[b : b + 1],
                        dtype,
                    )
                    for b in range(len(images))
                ]
                return {k: torch.cat([p[k] for p in per]) for k in per[0]}
            raise DiffsegError(f"unknown branch {branch!r} (expected uncond or cond)")

    # -- the two trajectories, one loop --------------------------------------------------------
    def _encode(self, images, keys) -> torch.Tensor:
        """keys: per image (content key, view), the roots of its posterior sample."""
        gens = (
            [seeding.generator(self.cfg.seed, key, view, "encode") for key, view in keys]
            if self.cfg.encode == "sample"
            else None
        )
        return encode(self.models.vae, images, self.cfg.encode, gens)  # [B, 4, H/8, W/8] fp32

    def _unet(self, x_BCHW, t, emb_BTD) -> torch.Tensor:
        m = self.models
        out = m.unet(x_BCHW.to(m.dtype), torch.tensor(t, device=m.device), encoder_hidden_states=emb_BTD)
        return out.sample.float()

    def _step_params(self, idx, t):
        a = self.alphas_cumprod[t]
        a_next = self.alphas_cumprod[self.cfg.steps[idx + 1]]
        return a, a_next, eta_at(t, self.cfg.eta, self.cfg.eta_window)

    def _uncond(self, images, sample_ids, views, latents=None, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """B images, one row each -> {layer: [B, S, C, h, w]}."""
        x, rows = self._uncond_rows(images, views, latents)
        return self._walk([x], [rows], dtype)[0]

    def _uncond_rows(self, images, views, latents=None) -> tuple[torch.Tensor, _Rows]:
        """(the first latent [B, 4, H, W], the rows) of B images' uncond trajectories."""
        keys = [(seeding.content_key(img), v) for img, v in zip(images, views)]
        x = self._encode(images, keys) if latents is None else latents
        B = x.shape[0]
        rows = _Rows(
            n_images=B,
            emb_KTD=self.text.get(self.uncond_text).expand(B, -1, -1),
            noise_parts=tuple((key, v, "uncond", "uncond") for key, v in keys),
            xattn_sel=[[(b, self.uncond_pos.get(c)) for c in self.classes] for b in range(B)],
            blk_sum=self.cfg.blk_sum,
        )
        return x, rows

    def _cond(self, image_1HW3, label_HW, sample_id, view, latent=None, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """One image, rows [uncond, class_1..class_n] -> {layer: [1, S, C, h, w]}."""
        x, rows = self._cond_rows(image_1HW3, label_HW, sample_id, view, latent)
        return self._walk([x], [rows], dtype)[0]

    def _cond_rows(self, image_1HW3, label_HW, sample_id, view, latent=None) -> tuple[torch.Tensor, _Rows]:
        """(the first latent [1, 4, H, W], the rows) of one image's cond trajectory."""
        label_HW = np.asarray(label_HW)
        if label_HW.shape != tuple(image_1HW3.shape[1:3]):
            raise DiffsegError(
                f"sample {sample_id}: label {label_HW.shape} and image {tuple(image_1HW3.shape[1:3])} sizes differ"
            )
        shown = present_classes(label_HW)
        present = tuple(c for c in self.classes if c in shown)  # active classes, in their order
        key = seeding.content_key(image_1HW3[0])
        x = self._encode(image_1HW3, [(key, view)]) if latent is None else latent  # [1, 4, H, W]
        masks_K1HW = class_masks(label_HW, present, (x.shape[-2], x.shape[-1])).to(x.device)
        emb_KTD = self.text.batch([self.uncond_text] + [self.class_text[c] for c in present])
        copies = ["uncond"] + [f"class{c}" for c in present]
        sel = [(1 + present.index(c), self.class_pos[c]) if c in present else None for c in self.classes]
        rows = _Rows(
            n_images=1,
            emb_KTD=emb_KTD,
            noise_parts=tuple((key, view, "cond", c) for c in copies),
            xattn_sel=[sel],
            blk_sum=self.cfg.blk_sum,
            guidance=self.cfg.guidance,
            masks_K1HW=masks_K1HW,
        )
        return x, rows

    def _walk(self, xs: list[torch.Tensor], groups: list[_Rows], dtype=torch.float32) -> list[dict[str, torch.Tensor]]:
        """The one trajectory loop: per evaluated step one U-Net call over the rows of every group
        (trajectories walked together: joint), the tap reads at saved steps, then the inversion step of
        every row (merged back into one latent for cond); stops after the last step a saved feature
        needs. -> per group {layer: `dtype` [B, S, C, h, w]}, each saved step written into its slot as
        it comes (one buffer, no float32 copies to stack). One group runs exactly as it always ran."""
        cfg, m = self.cfg, self.models
        xs = list(xs)
        Ks = [len(rows.noise_parts) for rows in groups]
        starts = [sum(Ks[:g]) for g in range(len(groups))]
        emb = groups[0].emb_KTD if len(groups) == 1 else torch.cat([rows.emb_KTD for rows in groups])
        saved: list[dict[str, torch.Tensor]] = [{} for _ in groups]
        with FeatureTaps(m.unet, cfg.layers) as taps:
            for idx in range(cfg.last_index + 1):
                t = cfg.steps[idx]
                x_Ks = [x.expand(K, -1, -1, -1) for x, K in zip(xs, Ks)]
                out = self._unet(x_Ks[0] if len(xs) == 1 else torch.cat(x_Ks), t, emb)
                feats = taps.read()
                last = idx == cfg.last_index
                if not last:
                    a, a_next, eta = self._step_params(idx, t)
                for g, (rows, K, o) in enumerate(zip(groups, Ks, starts)):
                    if t in cfg.save_steps:
                        s = cfg.save_steps.index(t)
                        for name, f in feats.items():
                            f_BChw = rows.feature(parse_layer(name)[1], f[o : o + K])
                            if name not in saved[g]:
                                B, C, h, w = f_BChw.shape
                                saved[g][name] = f_BChw.new_empty((B, len(cfg.save_steps), C, h, w), dtype=dtype)
                            saved[g][name][:, s] = f_BChw  # cast on the copy: float32 -> float16 rounds as .to() does
                    if last:
                        continue
                    eps_K = rows.guide(model_eps(out[o : o + K], x_Ks[g], a, m.prediction_type, cfg.raw_eps))
                    noise = None
                    if eta > 0:
                        noise = torch.stack(
                            [
                                seeding.randn(xs[g].shape[1:], cfg.seed, key, v, br, t, c)
                                for key, v, br, c in rows.noise_parts
                            ]
                        ).to(xs[g].device)
                    xs[g] = rows.merge(inversion_step(x_Ks[g], eps_K, a, a_next, eta, noise))
                if last:
                    break
        return [{name: sv[name] for name in cfg.layers} for sv in saved]


@dataclass(frozen=True, kw_only=True)
class _Rows:
    """What one trajectory feeds the U-Net per step, and how its outputs come back.

    Row b < n_images is image b's unconditional copy. The cond branch (one image) adds one row per
    present class after it: their eps are guided against row 0, and their next latents are merged
    back into one by the MultiDiffusion masks."""

    n_images: int
    emb_KTD: torch.Tensor  # prompt embedding per row
    noise_parts: tuple[tuple[str, int, str, str], ...]  # per row: (content key, view, branch, copy): its eta noise
    xattn_sel: list  # per image: class_maps selections (row, token positions) or None per active class
    blk_sum: bool = False  # blk as the reference sums it over its n + 2 copies (feature())
    guidance: float = 0.0
    masks_K1HW: torch.Tensor | None = None  # cond only

    def feature(self, kind: str, f_K) -> torch.Tensor:
        """A tap's output over the rows -> the saved feature per image [B, C, h, w]."""
        if kind == "xattn":
            return torch.stack([class_maps(f_K, sel) for sel in self.xattn_sel])
        if kind == "blk" and self.blk_sum:
            # The reference runs the uncond copy twice (uncond and the global "" prompt, equal to it)
            # besides the n class copies, and sums blk over all n + 2: 2 b_u + sum_k b_k (cond), 2 b_u.
            # Summed in float32: n + 2 float16 copies overflow where each one fits (CPU models are
            # float32 already, so their bytes are unchanged).
            f_K = f_K.float()
            return 2 * f_K[: self.n_images] + f_K[self.n_images :].sum(0, keepdim=True)
        return f_K[: self.n_images]

    def guide(self, eps_K: torch.Tensor) -> torch.Tensor:
        """Class rows: eps_k = eps_u + guidance (eps_text_k - eps_u); uncond rows unchanged."""
        if self.masks_K1HW is None:
            return eps_K
        eps_u = eps_K[:1]
        return torch.cat([eps_u, eps_u + self.guidance * (eps_K[1:] - eps_u)])

    def merge(self, x_next_K: torch.Tensor) -> torch.Tensor:
        """The rows' next latents -> the next latent [B, 4, H, W] (MultiDiffusion average for cond)."""
        if self.masks_K1HW is None:
            return x_next_K
        return masked_average(x_next_K, self.masks_K1HW)[None]


def _out(t: torch.Tensor, host: bool) -> np.ndarray | torch.Tensor:
    """float16 numpy on the host, or (host=False) the tensor where it lies."""
    t = t.detach().to(dtype=torch.float16)
    return t.cpu().numpy() if host else t
