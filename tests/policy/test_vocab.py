"""The motion vocabulary on two locally trained text tokenizers: a T5-like and a LLaMA-like one."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from motion_align.policy.vocab import MotionDecoding, MotionVocab

K = 512
VOCAB = MotionVocab(K)
SENTENCES = [
    "Generate motion: a person jumps twice",
    "a man walks forward then turns left",
    "someone waves with the right hand",
    "the person kicks and runs in a circle",
]


def t5_like() -> PreTrainedTokenizerFast:
    """Unigram + Metaspace, `</s>` appended as eos, `<pad>` (the T5 conventions)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(SENTENCES, trainer)
    eos = ("</s>", tok.token_to_id("</s>"))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[eos]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def llama_like() -> PreTrainedTokenizerFast:
    """Byte-level BPE, `<s>` prepended as bos, `</s>` eos, no pad token (the LLaMA conventions)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet
    )
    tok.train_from_iterator(SENTENCES, trainer)
    bos = ("<s>", tok.token_to_id("<s>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[bos]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(params=[t5_like, llama_like], ids=["t5", "llama"])
def tokenizer(request) -> PreTrainedTokenizerFast:
    """A fresh tokenizer of each family, with the motion vocabulary added."""
    tok = request.param()
    VOCAB.add_to_tokenizer(tok)
    return tok


def test_tokens_follow_motiongpt():
    assert VOCAB.tokens[0] == "<motion_id_0>" and VOCAB.tokens[-1] == "<motion_id_514>"
    assert len(VOCAB.tokens) == K + 3
    assert (VOCAB.som, VOCAB.eom, VOCAB.mask) == ("<motion_id_512>", "<motion_id_513>", "<motion_id_514>")
    assert VOCAB.codes_to_string([12, 7]) == "<motion_id_512><motion_id_12><motion_id_7><motion_id_513>"
    with pytest.raises(ValueError, match="code 600 is outside the codebook of 512"):
        VOCAB.codes_to_string([1, 600])
    for code in (K, -1):  # the start token is not a code; nothing wraps around
        with pytest.raises(ValueError, match=f"code {code} is outside"):
            VOCAB.codes_to_string([code])
    with pytest.raises(ValueError, match="codebook_size must be >= 1"):
        MotionVocab(0)


@pytest.mark.parametrize("make", [t5_like, llama_like], ids=["t5", "llama"])
def test_added_as_normal_tokens_once_and_contiguous(make):
    tok = make()
    size = len(tok)
    assert VOCAB.add_to_tokenizer(tok) == K + 3
    assert VOCAB.add_to_tokenizer(tok) == 0
    assert len(tok) == size + K + 3
    assert not set(VOCAB.tokens) & set(tok.all_special_tokens)
    assert VOCAB.ids(tok) == list(range(size, size + K + 3))


def test_encoding_gives_one_id_per_motion_token(tokenizer):
    codes = [0, 1, 12, 123, 511, 7]
    text = VOCAB.codes_to_string(codes)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == VOCAB.codes_to_ids(codes, tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids) == [VOCAB.som] + [f"<motion_id_{c}>" for c in codes] + [
        VOCAB.eom
    ]


def test_round_trip_through_ids_and_text(tokenizer):
    codes = [5, 300, 300, 0, 511]
    ids = tokenizer(VOCAB.codes_to_string(codes))["input_ids"]  # with the family's bos/eos
    assert VOCAB.decode(ids, tokenizer) == MotionDecoding(codes)
    text = tokenizer.decode(ids, skip_special_tokens=True)  # what TRL does with completions
    assert VOCAB.codes_to_string(codes) in text.replace(" ", "")
    assert VOCAB.decode(text) == MotionDecoding(codes)
    assert VOCAB.decode(tokenizer.decode(ids), tokenizer).ok  # special tokens removed with the tokenizer


def test_prompt_before_the_motion_is_not_a_problem(tokenizer):
    ids = tokenizer(SENTENCES[0] + " " + VOCAB.codes_to_string([3, 4]))["input_ids"]
    assert VOCAB.decode(ids, tokenizer) == MotionDecoding([3, 4])
    assert VOCAB.decode(tokenizer.decode(ids)).codes == [3, 4]


SOM, EOM, MASK = VOCAB.som, VOCAB.eom, VOCAB.mask
PROBLEM_CASES = {
    "missing start": (f"<motion_id_1><motion_id_2>{EOM}", [1, 2], "missing start token"),
    "missing end": (f"{SOM}<motion_id_1><motion_id_2>", [1, 2], "missing end token"),
    "text inside": (f"{SOM}<motion_id_1> walks <motion_id_2>{EOM}", [1, 2], "1 text token(s) between"),
    "after end": (f"{SOM}<motion_id_1>{EOM}<motion_id_4> more", [1], "2 token(s) after the end"),
    "second start": (f"{SOM}<motion_id_1>{SOM}<motion_id_2>{EOM}", [1, 2], "second start token"),
    "mask": (f"{SOM}<motion_id_1>{MASK}{EOM}", [1], "mask token <motion_id_514> inside"),
    "outside": (f"{SOM}<motion_id_600><motion_id_3>{EOM}", [3], "code 600 is outside the codebook of 512"),
    "empty": (f"{SOM}{EOM}", [], "empty motion"),
    "motion before start": (
        f"<motion_id_9>{SOM}<motion_id_3>{EOM}",
        [3],
        "1 motion token(s) before the start",
    ),
    "nothing": ("a person waves", [], "missing start token"),
}


@pytest.mark.parametrize("name", list(PROBLEM_CASES))
def test_each_problem_is_named_and_codes_recovered(name):
    text, codes, problem = PROBLEM_CASES[name]
    decoded = VOCAB.decode(text)
    assert decoded.codes == codes
    assert not decoded.ok
    assert any(problem in p for p in decoded.problems), decoded.problems


def test_problem_messages_say_how_many_and_which():
    decoded = VOCAB.decode(f"{SOM}<motion_id_1> oh no <motion_id_2>{EOM}")
    assert decoded.problems == ["2 text token(s) between motion tokens skipped: 'oh', 'no'"]
    assert VOCAB.decode(f"{SOM}<motion_id_1>").problems[0].startswith("missing end token <motion_id_513>")


def test_problems_from_ids(tokenizer):
    som, eom = VOCAB.codes_to_ids([], tokenizer)
    word = tokenizer("jumps", add_special_tokens=False)["input_ids"]
    code = VOCAB.codes_to_ids([8], tokenizer)[1]
    decoded = VOCAB.decode([som, code, *word, code, eom], tokenizer)
    assert (
        decoded.codes == [8, 8]
        and len(decoded.problems) == 1
        and "between motion tokens" in decoded.problems[0]
    )
    decoded = VOCAB.decode([som, code, len(tokenizer) + 5, eom], tokenizer)
    assert decoded.codes == [8] and decoded.problems == [
        f"id {len(tokenizer) + 5} is outside the tokenizer's vocabulary (skipped)"
    ]
    decoded = VOCAB.decode([som, code, eom, code], tokenizer)
    assert decoded.codes == [8] and "after the end token" in decoded.problems[0]
    decoded = VOCAB.decode(torch.tensor([som, code, code]), tokenizer)
    assert decoded.codes == [8, 8] and "missing end token" in decoded.problems[0]


def test_whitespace_between_tokens_is_tolerated():
    text = f" {SOM} <motion_id_1>\n<motion_id_2>  {EOM} "
    assert VOCAB.decode(text) == MotionDecoding([1, 2])


def test_batch_decode_matches_decode(tokenizer):
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [
        VOCAB.codes_to_ids([1, 2, 3], tokenizer) + [tokenizer.eos_token_id, pad],
        VOCAB.codes_to_ids([4], tokenizer)[:-1] + [pad, pad, pad],  # truncated
        VOCAB.codes_to_ids([], tokenizer) + [pad, pad, pad, pad],  # empty
        tokenizer(SENTENCES[1], add_special_tokens=False)["input_ids"][:2]
        + VOCAB.codes_to_ids([9, 9], tokenizer),
    ]
    width = max(map(len, rows))
    batch = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    decoded = VOCAB.batch_decode(batch, tokenizer)
    assert decoded == [VOCAB.decode(row, tokenizer) for row in batch]
    assert [d.codes for d in decoded] == [[1, 2, 3], [4], [], [9, 9]]
    assert [d.ok for d in decoded] == [True, False, False, True]
    mixed = VOCAB.batch_decode([rows[0], VOCAB.codes_to_string([5])], tokenizer)
    assert mixed == [MotionDecoding([1, 2, 3]), MotionDecoding([5])]


def test_save_and_reload_keeps_the_vocabulary(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert MotionVocab.from_tokenizer(reloaded) == VOCAB
    assert VOCAB.ids(reloaded) == VOCAB.ids(tokenizer)
    text = VOCAB.codes_to_string([3, 1, 4])
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert VOCAB.add_to_tokenizer(reloaded) == 0


def test_errors_for_missing_incomplete_or_other_vocabularies():
    tok = llama_like()
    for call in (
        lambda: VOCAB.ids(tok),
        lambda: MotionVocab.from_tokenizer(tok),
        lambda: VOCAB.decode([1], tok),
    ):
        with pytest.raises(
            ValueError, match="tokenizer has no motion tokens: call MotionVocab.add_to_tokenizer first"
        ):
            call()
    with pytest.raises(ValueError, match="needs the tokenizer"):
        VOCAB.decode([1, 2])
    tok.add_tokens([t for t in VOCAB.tokens if t != "<motion_id_7>"])
    with pytest.raises(ValueError, match=r"incomplete motion vocabulary.*'<motion_id_7>'"):
        MotionVocab.from_tokenizer(tok)
    with pytest.raises(ValueError, match="incomplete motion vocabulary"):
        VOCAB.ids(tok)
    with pytest.raises(ValueError, match="refusing to mix"):
        VOCAB.add_to_tokenizer(tok)
    small = llama_like()
    MotionVocab(16).add_to_tokenizer(small)
    assert MotionVocab.from_tokenizer(small) == MotionVocab(16)
    with pytest.raises(ValueError, match="refusing to mix"):
        VOCAB.add_to_tokenizer(small)
    with pytest.raises(ValueError, match="larger than 8"):
        MotionVocab(8).ids(small)


def test_batch_decode_reads_clean_rows_without_the_slow_path(tokenizer, monkeypatch):
    monkeypatch.setattr(MotionVocab, "_parse", lambda *a: pytest.fail("clean row took the slow path"))
    rows = torch.tensor([VOCAB.codes_to_ids([1, 2], tokenizer), VOCAB.codes_to_ids([511, 0], tokenizer)])
    assert VOCAB.batch_decode(rows, tokenizer) == [MotionDecoding([1, 2]), MotionDecoding([511, 0])]
