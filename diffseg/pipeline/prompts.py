"""Text side of the trajectory (docs/design/method.md §4-5): class prompts with their default
descriptions, the label-free class-list prompt, where each class name sits among the tokens
(for cross-attention maps), and a cache of text embeddings (one encoder call per prompt).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffseg.core.classes import CITYSCAPES, CLASS_NAMES, ClassTable
from diffseg.core.errors import DiffsegError

PREFIX = "A high quality photo; europe city;"
TEMPLATE = PREFIX + " {name}, {description}"
# A label space of one's own (ClassTable other than Cityscapes'): no street scene is assumed, and a
# class prompt is the prefix and the class's prompt words from classes.json (no description).
GENERIC_PREFIX = "A high quality photo;"
GENERIC_TEMPLATE = GENERIC_PREFIX + " {name}"
UNCOND_PROMPTS = ("empty", "classes")

DEFAULT_DESCRIPTIONS: dict[str, str] = {
    "road": "all types of roads, including lanes for vehicles",
    "sidewalk": "paths for pedestrian use beside the road",
    "building": "houses, offices and other buildings",
    "wall": "standalone outer walls of buildings or structures",
    "fence": "fences and railings",
    "pole": "poles holding signs, lights or wires",
    "traffic light": "traffic lights and their housings",
    "traffic sign": "traffic signs facing the road",
    "vegetation": "trees, bushes and hedges",
    "terrain": "grass, soil and sand beside the road",
    "sky": "the open sky",
    "person": "people walking or standing",
    "rider": "people riding bicycles or motorcycles",
    "car": "cars, vans and small four-wheeled vehicles",
    "truck": "larger vehicles used for cargo transport",
    "bus": "buses for passengers",
    "train": "trains and trams on rails",
    "motorcycle": "motorcycles and scooters",
    "bicycle": "bicycles",
}


def load_descriptions(path) -> dict[str, str]:
    """A JSON object {class name: description}; names must be known class names."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DiffsegError(f"{p}: cannot read class descriptions ({e})") from e
    if not isinstance(d, dict):
        raise DiffsegError(f"{p}: expected a JSON object {{class name: description}}")
    return check_descriptions(d, str(p))


def check_descriptions(d: dict, where: str = "descriptions") -> dict[str, str]:
    for name in d:
        if name not in CLASS_NAMES:
            raise DiffsegError(f"{where}: unknown class name {name!r}")
    return {**DEFAULT_DESCRIPTIONS, **{k: str(v) for k, v in d.items()}}


def prefix(table: ClassTable = CITYSCAPES) -> str:
    """What every prompt of the label space `table` starts with."""
    return PREFIX if table == CITYSCAPES else GENERIC_PREFIX


def class_prompt(train_id: int, descriptions: dict[str, str] | None = None, table: ClassTable = CITYSCAPES) -> str:
    """ "A high quality photo; europe city; <class>, <description>"; another label space's:
    "A high quality photo; <the class's prompt words>"."""
    if table != CITYSCAPES:
        return GENERIC_TEMPLATE.format(name=table.prompts[train_id])
    name = CLASS_NAMES[train_id]
    desc = (descriptions or DEFAULT_DESCRIPTIONS)[name]
    return TEMPLATE.format(name=name, description=desc)


def class_list_prompt(class_ids, table: ClassTable = CITYSCAPES) -> str:
    """The label-free prompt naming every active class (unconditional branch, 'classes')."""
    return prefix(table) + " " + ", ".join(table.prompts[c] for c in class_ids)


def uncond_prompt(mode: str, class_ids, table: ClassTable = CITYSCAPES) -> str:
    if mode == "empty":
        return ""
    if mode == "classes":
        return class_list_prompt(class_ids, table)
    raise DiffsegError(f"unknown uncond prompt {mode!r} (expected {', '.join(UNCOND_PROMPTS)})")


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    if special:
        return list(
            tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
        )
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def token_positions(tokenizer, prompt: str, name: str, start_char: int) -> tuple[int, ...]:
    """Indices (in the padded token sequence fed to the text encoder) of the tokens of `name`,
    which starts at character `start_char` of `prompt`."""
    assert prompt[start_char : start_char + len(name)] == name, (prompt, name, start_char)
    full = _ids(tokenizer, prompt, special=True)
    want = _ids(tokenizer, name, special=False)
    first = len(_ids(tokenizer, prompt[:start_char], special=False))  # >= true offset - n_bos
    for s in range(first, len(full) - len(want) + 1):
        if full[s : s + len(want)] == want:
            return tuple(range(s, s + len(want)))
    raise DiffsegError(
        f"class name {name!r} not found among the tokens of prompt {prompt!r} "
        f"(truncated at {tokenizer.model_max_length} tokens?)"
    )


def class_token_positions(
    tokenizer, prompt: str, class_ids, table: ClassTable = CITYSCAPES
) -> dict[int, tuple[int, ...]]:
    """{train id: token positions} for each class named in `prompt`, searched left to right."""
    out, at = {}, 0
    for c in class_ids:
        name = table.prompts[c]
        start = prompt.find(name, at)
        if start < 0:
            raise DiffsegError(f"class name {name!r} not in prompt {prompt!r}")
        out[c] = token_positions(tokenizer, prompt, name, start)
        at = start + len(name)
    return out


def name_positions_in_class_prompt(
    tokenizer, prompt: str, train_id: int, table: ClassTable = CITYSCAPES
) -> tuple[int, ...]:
    """Token positions of the class name (prompt words) right after the prefix of a class prompt."""
    name = table.prompts[train_id]
    start = len(prefix(table)) + 1
    return token_positions(tokenizer, prompt, name, start)


class TextEmbeddings:
    """Embeddings [1, T, D] per prompt, computed once and reused for every image."""

    def __init__(self, tokenizer, text_encoder, device, dtype):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.device, self.dtype = torch.device(device), dtype
        self._cache: dict[str, torch.Tensor] = {}
        self.encoder_calls = 0

    def get(self, prompt: str) -> torch.Tensor:
        if prompt not in self._cache:
            ids = torch.tensor([_ids(self.tokenizer, prompt, special=True)], device=self.text_encoder.device)
            # a normal tensor even when first asked for under inference_mode: the cache also
            # serves no_grad (online) callers
            with torch.inference_mode(False), torch.no_grad():
                emb = self.text_encoder(ids)[0]
            self.encoder_calls += 1
            self._cache[prompt] = emb.to(self.device, self.dtype)
        return self._cache[prompt]

    def batch(self, prompts) -> torch.Tensor:
        """[len(prompts), T, D]."""
        return torch.cat([self.get(p) for p in prompts], 0)
