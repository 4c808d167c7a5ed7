"""`diffseg predict`: segment images with a trained run (docs/design/method.md §8, prediction).

Per image: resize to the U-Net resolution with the evaluation caches' own function
(`views.eval_image`: no train/inference skew). That resolution is `--resolution` when given, else
`aspect_size`: the input's aspect ratio within the area of the run's first evaluation cache's
resolution (1024x512 when the run has none), sides multiples of 64. Then run the
unconditional trajectory online with the training cache's trajectory config restricted to the
run's layers and saved steps (same model, same prompt), round the features to float16 as the
cache stores them, apply the run's fusion + head, upsample the logits (bilinear) to the input
size, argmax. Writes `<name>.png` (palette PNG, indices = train ids) and `<name>_vis.png`
(image | prediction | ground truth with --labels; legend of the classes shown). With labels,
the mIoU over the labelled images is printed at the end.

Model: the run's (recorded name); its fingerprint must equal the one the run was trained with
(error otherwise). An explicit --model with another fingerprint is allowed with a warning naming
both fingerprints (e.g. the same weights in another layout, or a deliberate experiment).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffseg.core.classes import ClassTable
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.core.geometry import check_unet_size
from diffseg.core.outputs import check_outputs
from diffseg.nn.metrics import ConfusionMatrix, miou
from diffseg.pipeline.config import TrajectoryConfig
from diffseg.stages.device import autocast_dtype, resolve_device
from diffseg.stages.extract.views import eval_image
from diffseg.stages.predict.inputs import (
    InputImage,
    find_label,
    gather_inputs,
    output_paths,
    read_image,
    read_label,
    warn,
)
from diffseg.stages.predict.online import image_logits
from diffseg.stages.runs.record import RunRecord, extract_config, load_segmentor, read_run
from diffseg.stages.viz import save_mask, side_by_side

DEFAULT_RESOLUTION = (1024, 512)  # (W, H): Cityscapes' evaluation size, the budget of runs without evaluation caches


def check_resolution(size: tuple[int, int] | None) -> tuple[int, int] | None:
    """--resolution validated (None: the aspect rule decides per image)."""
    return None if size is None else check_unet_size(size, "--resolution")


def aspect_size(image_wh: tuple[int, int], budget_wh: tuple[int, int]) -> tuple[int, int]:
    """(W, H), multiples of 64: the input's aspect ratio at the area of `budget_wh`, each side the
    ideal one rounded to the nearest multiple of 64 (at least 64). 2:1 in 1024x512 -> 1024x512;
    4:3 -> 832x640 (ideal 836x627); 1:1 -> 704x704 (ideal 724)."""
    w, h = image_wh
    area = budget_wh[0] * budget_wh[1]
    ideal_w, ideal_h = math.sqrt(area * w / h), math.sqrt(area * h / w)
    return (max(64, 64 * round(ideal_w / 64)), max(64, 64 * round(ideal_h / 64)))


def area_budget(record: RunRecord) -> tuple[int, int]:
    """The resolution of the run's first evaluation cache, else DEFAULT_RESOLUTION (with a warning
    when the recorded cache cannot be read)."""
    from diffseg.cache import CacheReader

    if not record.cfg.eval_caches:
        return DEFAULT_RESOLUTION
    first = Path(record.cfg.eval_caches[0])
    try:
        return CacheReader(first).record.resolution
    except DiffsegError as err:  # moved or deleted since training: predict still works
        warn(f"cannot read the run's first evaluation cache {first} ({err}): budget {DEFAULT_RESOLUTION}")
        return DEFAULT_RESOLUTION


def load_frozen(record: RunRecord, model: str | None, device: str):
    """The frozen models for the online trajectory, fingerprint-checked against the run."""
    from diffseg.pipeline.models import load_models

    name = model or record.train_cache["model"]
    dtype = torch.float16 if device == "cuda" else torch.float32
    models = load_models(name, device=device, dtype=dtype)
    want = record.train_cache["model_fingerprint"]
    if models.fingerprint != want:
        msg = (
            f"model {name} has fingerprint {models.fingerprint}; {record.path} was trained on features "
            f"of {record.train_cache['model']} with fingerprint {want}"
        )
        if model is None:
            raise CacheMismatch(msg + " (pass --model explicitly to predict with it anyway)")
        warn(msg + ": predicting with it anyway (--model given)")
    return models


def build_extractor(record: RunRecord, extract: dict, models):
    """FeatureExtractor repeating the training cache's uncond trajectory (`extract`: its
    extract config) for the run's layers and saved steps."""
    from diffseg.pipeline.extractor import FeatureExtractor

    traj = TrajectoryConfig.from_dict(extract["trajectory"])
    cfg = record.cfg
    traj = dataclasses.replace(traj, layers=tuple(cfg.layers), save_steps=tuple(int(t) for t in cfg.save_steps))
    return FeatureExtractor(
        models,
        traj,
        classes=tuple(extract.get("classes", range(record.class_table.num_classes))),
        uncond_prompt=extract.get("uncond_prompt", "empty"),
        table=record.class_table,
    )


def load_predictor(record: RunRecord, extract: dict, model: str | None, device: str):
    """(feature extractor, segmentor) of a run: the frozen models repeating its training cache's
    trajectory and the run's final weights (else its newest sound checkpoint, with a warning)."""
    extractor = build_extractor(record, extract, load_frozen(record, model, device))
    segmentor, which = load_segmentor(record, device)
    if which != "final":
        warn(f"{record.path} has no final weights: using its {which}")
    return extractor, segmentor


def network_input(image_HW3: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """uint8 [H', W', 3] fed to the VAE: the image resized exactly as evaluation caches resize it."""
    return eval_image(image_HW3, resolution)


def predict_image(
    extractor,
    segmentor,
    image_HW3: np.ndarray,
    resolution: tuple[int, int],
    sample_id: str,
    device,
    amp: torch.dtype | None = None,
) -> np.ndarray:
    """uint8 train ids [H, W] at the input size (online.image_logits, whole image, one view); the
    segmentor under eval's autocast (`amp`: autocast_dtype of the device), so a prediction and an
    evaluation agree."""
    h, w = image_HW3.shape[:2]
    logits_KHW = image_logits(extractor, segmentor, image_HW3, [resolution], (h, w), sample_id, device, amp)
    return logits_KHW.argmax(0).to(torch.uint8).cpu().numpy()


def write_outputs(
    out: Path, item: InputImage, image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, table: ClassTable
) -> None:
    mask_path, vis_path = output_paths(out, item)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    save_mask(mask_path, pred, table)
    side_by_side(image, pred, gt, table=table).save(vis_path)


def main(
    *,
    run: Path,
    inputs: list[Path],
    out: Path,
    model: str | None = None,
    resolution: tuple[int, int] | None = None,
    labels: Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> Path:
    # 1. cheap checks first (before any model loads): resolution, inputs, outputs, run, its training cache
    fixed = check_resolution(resolution)
    items = gather_inputs(list(inputs))
    planned = [p for item in items for p in output_paths(Path(out), item)]
    check_outputs(Path(out), planned, [*inputs, *([labels] if labels is not None else [])], overwrite=overwrite)
    record = read_run(Path(run))
    extract = extract_config(record)
    budget = area_budget(record)
    # 2. models: frozen diffusion model + the run's fusion and head
    dev = resolve_device(device).type
    extractor, segmentor = load_predictor(record, extract, model, dev)
    # 3. images
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = record.class_table
    cm, labelled = ConfusionMatrix(table.num_classes), 0
    for item in tqdm(items, desc="predict", unit="image", file=sys.stderr, dynamic_ncols=True):
        image = read_image(item.path)
        size = fixed or aspect_size(image.shape[1::-1], budget)
        pred = predict_image(extractor, segmentor, image, size, item.name, dev, autocast_dtype(torch.device(dev)))
        gt = None
        if labels is not None:
            label_path = find_label(labels, item)
            gt = read_label(label_path, pred.shape, table) if label_path else None
            if gt is not None:
                cm.update(pred, gt)
                labelled += 1
        write_outputs(out, item, image, pred, gt, table)
    print(f"predict: {len(items)} images -> {out} (<name>.png masks, <name>_vis.png pictures)", file=sys.stderr)
    if labels is not None:
        score = miou(cm)
        shown = "n/a" if np.isnan(score) else f"{100 * score:.2f}"
        print(f"predict: mIoU {shown} over {labelled} labelled images of {len(items)}", file=sys.stderr)
    return out
