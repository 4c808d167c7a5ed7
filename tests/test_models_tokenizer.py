"""The project's CLIP tokenizer: whole-word class names, every default prompt within 77."""

import pytest

from diffseg.pipeline.tokenizer import (
    DEFAULT_DESCRIPTIONS,
    MAX_LENGTH,
    PROMPT_TEMPLATE,
    _apply_bpe,
    _symbols,
    build_tokenizer,
    build_vocab,
    write_tokenizer_files,
)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_class_names_are_whole_word_tokens(tok):
    assert len(DEFAULT_DESCRIPTIONS) == 19
    for name in DEFAULT_DESCRIPTIONS:
        tokens = tok.tokenize(name)
        assert tokens == [w + "</w>" for w in name.split()], name


def test_default_prompts_fit_and_are_whole_words(tok):
    lengths = []
    for name, description in DEFAULT_DESCRIPTIONS.items():
        prompt = PROMPT_TEMPLATE.format(name=name, description=description)
        ids = tok(prompt).input_ids
        lengths.append(len(ids))
        assert all(t.endswith("</w>") for t in tok.convert_ids_to_tokens(ids[1:-1])), prompt
    assert max(lengths) <= MAX_LENGTH
    all_classes = ", ".join(DEFAULT_DESCRIPTIONS)  # the label-free class-list prompt
    assert len(tok(all_classes).input_ids) <= MAX_LENGTH


def test_special_tokens_and_padding(tok):
    assert tok.model_max_length == MAX_LENGTH
    ids = tok("a road", padding="max_length", max_length=MAX_LENGTH).input_ids
    assert len(ids) == MAX_LENGTH
    assert ids[0] == tok.bos_token_id and ids[3] == tok.eos_token_id
    assert ids[4:] == [tok.pad_token_id] * (MAX_LENGTH - 4) and tok.pad_token == "!"
    assert tok.convert_ids_to_tokens(ids[:4]) == ["<|startoftext|>", "a</w>", "road</w>", "<|endoftext|>"]


def test_unknown_words_fall_back_to_bytes(tok):
    assert tok.tokenize("zq") == ["z", "q</w>"]


def test_bpe_hand_case():
    vocab, merges = build_vocab(["ab", "abc"])
    assert merges == ["a b</w>", "a b", "ab c</w>"]
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    assert _apply_bpe(_symbols("ab"), ranks) == ["ab</w>"]
    assert _apply_bpe(_symbols("abc"), ranks) == ["abc</w>"]
    assert list(vocab)[-5:] == ["ab</w>", "ab", "abc</w>", "<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 256 * 2 + 3 + 2


def test_files_round_trip(tmp_path, tok):
    from transformers import CLIPTokenizer

    directory = write_tokenizer_files(tmp_path / "tokenizer")
    assert sorted(p.name for p in directory.iterdir()) == [
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    again = CLIPTokenizer.from_pretrained(directory)
    text = "A high quality photo; europe city; traffic light, traffic lights and their housings"
    assert again(text).input_ids == tok(text).input_ids


def test_covers_the_prompts_the_pipeline_builds(tok):
    """Guards against drift between this vocabulary and pipeline/prompts.py, core/classes.py."""
    from diffseg.core.classes import CLASS_NAMES
    from diffseg.pipeline import prompts

    assert tuple(DEFAULT_DESCRIPTIONS) == tuple(CLASS_NAMES)
    assert prompts.DEFAULT_DESCRIPTIONS == DEFAULT_DESCRIPTIONS
    assert prompts.TEMPLATE == PROMPT_TEMPLATE
    texts = [prompts.class_prompt(i) for i in range(len(CLASS_NAMES))]
    texts.append(prompts.class_list_prompt(range(len(CLASS_NAMES))))
    for text in texts:
        ids = tok(text).input_ids
        assert len(ids) <= MAX_LENGTH
        assert all(t.endswith("</w>") for t in tok.convert_ids_to_tokens(ids[1:-1])), text
