"""The project's own CLIP tokenizer for the built-in models (docs/design/method.md §1).

A real `transformers.CLIPTokenizer` (byte-level BPE, `</w>` word ends, SD 2.1's special
tokens, 77 positions) built from a `vocab.json` + `merges.txt` generated here: the 256
byte symbols, their word-final forms, and merges that assemble every word of the prompt
template, the 19 class names, the default class descriptions (docs/design/method.md §4) and a few
hundred common English words into single tokens. Anything else still tokenizes, byte by
byte. Padding uses "!" (id 0), as SD 2.1's OpenCLIP tokenizer does.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import regex

# The vocabulary covers the prompts diffseg builds (docs/design/method.md §4) word for word.
from diffseg.pipeline.prompts import DEFAULT_DESCRIPTIONS
from diffseg.pipeline.prompts import TEMPLATE as PROMPT_TEMPLATE

MAX_LENGTH = 77  # CLIP's context, SD 2.1's text input length
BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "!"

# Mirrors CLIP's pre-tokenizer (transformers' CLIPTokenizer) after lowercasing.
_WORD_RE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")

_COMMON_WORDS = """
a about above across after again against all almost alone along also always am among an
and another any are around as at away back bad be because been before behind being below
best better between big black blue both bottom bridge bright but by can center clear close
cloud cloudy color colour come could dark day daytime different do does down drive driving
dry during each early east empty end even evening every far few field fog foggy for forest
from front full get give go good gray green grey ground group had half hand has have he
head her here high highway hill his hot house how i if image in inside into is it its just
kind large last left less light like line little long look low made make man many may me
men middle might more morning most much must my near new next night no noon north not now
of off old on one only open or other our out outside over own park parked parking part
path people photo picture place plant point quality rain rainy right river round same scene
see shadow she should side sign small snow snowy so some south space stand start still
stop street sun sunny sunset take than that the their them then there these they thing
this those three through to together top tower town tree two under up urban us use very
view village was water way we weather west wet what when where which while white who why
will window winter with woman women world would yellow you your
autumn spring summer city europe european america asian road roads lane crossing
crosswalk intersection traffic sidewalk pedestrian curb lamp street lamp post bike bicycle
scooter van vans tram tram lines rail rails cobblestone asphalt concrete brick glass metal
wood wooden stone red orange purple brown pink level lit shade shaded rainy overcast haze
mist misty dusk dawn blurry sharp detailed realistic render rendered game synthetic real
camera dashboard driver vehicle vehicles
""".split()


def prompt_words() -> list[str]:
    """Every word the built-in vocabulary must hold whole, in first-seen order."""
    texts = [PROMPT_TEMPLATE.format(name=n, description=d) for n, d in DEFAULT_DESCRIPTIONS.items()]
    texts += _COMMON_WORDS
    words: dict[str, None] = {}
    for text in texts:
        for w in _WORD_RE.findall(text.lower()):
            words.setdefault(w, None)
    return list(words)


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _symbols(word: str) -> list[str]:
    """A word's initial BPE symbols: byte characters, the last one with `</w>`."""
    chars = [bytes_to_unicode()[b] for b in word.encode("utf-8")]
    return chars[:-1] + [chars[-1] + "</w>"]


def _apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Standard BPE: repeatedly merge the adjacent pair of lowest rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(itertools.pairwise(symbols))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        _, i = min(ranked)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-ordered vocab (bytes, bytes</w>, merge results, specials) and merges for `words`.

    A merge appended with the highest rank never changes how an already-whole word is
    merged (at each of its steps a lower-ranked pair existed), so adding merges word by
    word until each word is one token converges.
    """
    ranks: dict[tuple[str, str], int] = {}
    merges: list[str] = []
    for word in words:
        while len(symbols := _apply_bpe(_symbols(word), ranks)) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(f"{pair[0]} {pair[1]}")
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    tokens += [m.replace(" ", "") for m in merges]
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab, merges


def write_tokenizer_files(directory: Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs of the built-in tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(prompt_words())
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": EOS}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, **specials}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def build_tokenizer():
    """The built-in tokenizer, loaded from generated files exactly as a real one is."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="diffseg-tok-") as tmp:
        return CLIPTokenizer.from_pretrained(write_tokenizer_files(Path(tmp)))
