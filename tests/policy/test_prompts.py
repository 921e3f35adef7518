"""Prompt templates: the toolkit's and MotionGPT's, recorded with the text tokenizer, and used wherever a
caption becomes a prompt (generation, SFT rows, preference rows, PPO/GRPO queries)."""

from __future__ import annotations

import datasets
import pytest
from transformers import AutoTokenizer

from motion_align.data.preferences import to_trainer_rows
from motion_align.data.sft import sft_rows
from motion_align.policy.causal_view import query_ids
from motion_align.policy.model import format_prompt
from motion_align.policy.prompts import DEFAULT, MOTIONGPT, PromptTemplate, preset, set_template, template_of
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab


def test_the_two_presets_format_as_documented():
    assert format_prompt("a person jumps twice") == "Generate motion: a person jumps twice."
    assert format_prompt("a person jumps", 96) == "Generate motion of 4.8 seconds: a person jumps."
    # MotionGPT's mgpt_lm.py: captions as they are, frames as a count
    assert MOTIONGPT.format("a person jumps twice") == "Generate motion: a person jumps twice"
    assert MOTIONGPT.format("a person jumps", 96) == "Generate motion with 96 frames: a person jumps"
    assert preset("motiongpt") is MOTIONGPT and preset("default") is DEFAULT
    with pytest.raises(ValueError, match="prompt_template: one of"):
        preset("chatml")
    with pytest.raises(ValueError, match="no {caption} placeholder"):
        PromptTemplate(prompt="Generate motion:")
    with pytest.raises(ValueError, match="frames must be a positive number"):
        MOTIONGPT.format("a person jumps", 0)


@pytest.fixture
def tokenizer():
    tok = train_text_tokenizer(["Generate motion: a person walks."] * 8, "t5", vocab_size=100)
    MotionVocab(16).add_to_tokenizer(tok)
    return tok


def test_the_template_is_saved_with_the_tokenizer_and_read_back(tokenizer, tmp_path):
    assert template_of(tokenizer) == DEFAULT  # a tokenizer that records none
    set_template(tokenizer, MOTIONGPT)
    tokenizer.save_pretrained(tmp_path / "tok")
    assert template_of(AutoTokenizer.from_pretrained(tmp_path / "tok")) == MOTIONGPT
    tokenizer.init_kwargs["motion_prompt_template"] = {"prompt": "no placeholder"}
    with pytest.raises(ValueError, match="tokenizer_config.json: motion_prompt_template: .*no {caption}"):
        template_of(tokenizer)


def test_every_place_a_caption_becomes_a_prompt_uses_the_recorded_template(tokenizer):
    set_template(tokenizer, MOTIONGPT)
    vocab = MotionVocab(16)
    som = tokenizer.convert_tokens_to_ids(vocab.som)
    assert query_ids(tokenizer, "a person walks", vocab) == tokenizer(
        "Generate motion: a person walks"
    ).input_ids + [som]
    row = {"prompt": "a person walks", "chosen": vocab.codes_to_string([1]),
           "rejected": vocab.codes_to_string([2]), "degree": None}  # fmt: skip
    pairs = datasets.Dataset.from_list([row])
    assert to_trainer_rows(pairs, template_of(tokenizer))["prompt"] == ["Generate motion: a person walks"]
    batch = {"captions": [["a person walks"]], "codes": [[1, 2, 3]]}
    rows = sft_rows(batch, vocab, length_prompts=True, template=template_of(tokenizer))
    assert rows["prompt"] == ["Generate motion with 12 frames: a person walks"]


def test_a_recipe_overrides_the_policys_template_and_its_output_records_it(preference_inputs, tmp_path):
    import json

    from conftest import PAIR_CODEBOOK, parse_recipe, random_pairs

    from motion_align.trainers.dpo_config import MotionDPOConfig
    from motion_align.trainers.recipe import get_policy, get_preference_datasets

    pairs = [{**row, "prompt": row["prompt"].rstrip(".")} for row in random_pairs(12, PAIR_CODEBOOK)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in pairs))
    flags = ["--model_name_or_path", str(preference_inputs["t5"]),
             "--dataset_name", str(tmp_path / "pairs.jsonl"),
             "--output_dir", str(tmp_path / "out")]  # fmt: skip
    recipe = "recipes/t5/dpo_ipo/config_ipo_lora.yaml"
    for name, template in ((None, DEFAULT), ("motiongpt", MOTIONGPT)):
        extra = ["--prompt_template", name] if name else []
        config = parse_recipe(MotionDPOConfig, recipe, *flags, *extra)
        _, tokenizer, _ = get_policy(config)
        assert template_of(tokenizer) == template
        prompts = set(get_preference_datasets(config, tokenizer)["train"]["prompt"])
        assert prompts <= {template.format(row["prompt"]) for row in pairs}  # no full stop with MotionGPT's
    tokenizer.save_pretrained(tmp_path / "saved")  # what save_aligned_policy writes beside the adapter
    assert template_of(AutoTokenizer.from_pretrained(tmp_path / "saved")) == MOTIONGPT
