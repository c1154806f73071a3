"""Tokenizer id layout, encode/decode, BPE training and OFA's task prompts (offline, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.instructions import (
    caption_target,
    pre_caption,
    pre_question,
    ve_answer,
)
from robustbench_ofa.models.tokenizer import (
    CONFIG_FILE,
    MERGES_FILE,
    OFA_SPECIAL,
    VOCAB_FILE,
    OFATokenizer,
    train_bpe,
)
from robustbench_ofa.tasks import instruction, target_text

_WORDS = (
    "the a an red blue green yellow square circle triangle dog cat man woman person left right top bottom "
    "of on in with holding next to small large big near behind front which region does text describe "
    "image what is there how many are color"
).split()


def _corpus(n: int = 1500) -> list[str]:
    """Deterministic small corpus shaped like OFA prompts (quotes, question marks, digits)."""
    out = []
    for i in range(n):
        k = 3 + i % 9
        phrase = " ".join(_WORDS[(i * 7 + j * 13) % len(_WORDS)] for j in range(k))
        out.append(phrase)
        if i % 3 == 0:
            out.append(f' which region does the text " {phrase} " describe?')
        if i % 5 == 0:
            out.append(f" how many {phrase} are there? {i % 10}")
    return out


SENTENCES = [
    " a red square on the left",
    ' which region does the text " the man holding a dog " describe?',
    " how many cats are there?",
    " what is the color of the big triangle?",
    " unseen wörds and ünïcode 日本 still round-trip",
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bpe")
    train_bpe(_corpus(), folder, vocab_size=700, num_codes=0, num_bins=1000)
    return folder


@pytest.fixture(scope="module")
def tok(tok_dir: Path) -> OFATokenizer:
    return OFATokenizer.from_pretrained(tok_dir)


def _write_real_format_vocab(folder: Path, with_mask: bool = True) -> None:
    """A vocabulary with OFA's real BPE size (50264 + <mask>) but filler tokens; merges are empty."""
    from transformers.models.bart.tokenization_bart import bytes_to_unicode

    tokens = ["<s>", "<pad>", "</s>", "<unk>", *bytes_to_unicode().values()]
    tokens += [f"filler{i}" for i in range(50264 - len(tokens))]
    if with_mask:
        tokens.append("<mask>")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VOCAB_FILE).write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / MERGES_FILE).write_text("#version: 0.2\n", encoding="utf-8")


# ---------------------------------------------------------------------------- id layout
def test_trained_layout(tok: OFATokenizer, tok_dir: Path) -> None:
    vocab = json.loads((tok_dir / VOCAB_FILE).read_text(encoding="utf-8"))
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert vocab["<mask>"] == len(vocab) - 1 == tok.mask_token_id
    assert len(vocab) <= 700
    assert tok.num_codes == 0 and tok.num_bins == 1000
    assert tok.code_offset == tok.bin_offset == len(vocab)
    assert tok.vocab_size == len(tok) == len(vocab) + 1000
    assert json.loads((tok_dir / CONFIG_FILE).read_text()) == {"num_bins": 1000, "num_codes": 0}


def test_codes_shift_bins(tok_dir: Path) -> None:
    tok = OFATokenizer.from_pretrained(tok_dir, num_codes=5, num_bins=10)
    assert tok.bin_offset == tok.code_offset + 5
    assert tok.vocab_size == tok.code_offset + 15
    assert tok.code_token_id(4) == tok.bin_offset - 1
    assert tok.convert_ids_to_tokens([tok.code_offset, tok.bin_offset + 9]) == ["<code_0>", "<bin_9>"]
    assert tok.is_code(tok.code_offset) and not tok.is_code(tok.bin_offset)


@pytest.mark.parametrize("with_mask", [True, False])
def test_real_ofa_layout(tmp_path: Path, with_mask: bool) -> None:
    _write_real_format_vocab(tmp_path, with_mask=with_mask)
    tok = OFATokenizer.from_pretrained(tmp_path)  # no config file: OFA-Sys defaults 8192 / 1000
    assert tok.mask_token_id == OFA_SPECIAL.ofa_mask_id == 50264
    assert tok.code_offset == OFA_SPECIAL.ofa_code_offset == 50265
    assert tok.code_token_id(8191) == 58456
    assert tok.bin_offset == OFA_SPECIAL.ofa_bin_offset == 58457
    assert tok.bin_token_id(999) == 59456
    assert tok.vocab_size == OFA_SPECIAL.ofa_vocab_size == 59457
    assert tok.encode("<bin_0> <bin_999><code_7>", add_special_tokens=False) == [58457, 59456, 50272]
    assert tok.convert_ids_to_tokens([50264, 50265, 58456, 58457]) == [
        "<mask>",
        "<code_0>",
        "<code_8191>",
        "<bin_0>",
    ]


# ---------------------------------------------------------------------------- encode / decode
@pytest.mark.parametrize("text", SENTENCES)
def test_round_trip(tok: OFATokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=False) == f"<s>{text}</s>"
    assert tok.encode(tok.decode(ids, skip_special_tokens=False), add_special_tokens=False) == ids


@pytest.mark.parametrize("text", SENTENCES)
def test_matches_bart_and_tokenizers(tok: OFATokenizer, tok_dir: Path, text: str) -> None:
    """Same ids as BartTokenizer and as the independent Rust BPE reading the same files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import BartTokenizer

    bart = BartTokenizer(str(tok_dir / VOCAB_FILE), str(tok_dir / MERGES_FILE))
    assert tok.encode(text) == bart(text)["input_ids"]
    rust = Tokenizer(models.BPE.from_file(str(tok_dir / VOCAB_FILE), str(tok_dir / MERGES_FILE)))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    assert tok.encode(text, add_special_tokens=False) == rust.encode(text).ids


def test_leading_space_matters(tok: OFATokenizer) -> None:
    with_space = tok.encode(" dog", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(with_space) == ["Ġdog"]
    assert tok.encode("dog", add_special_tokens=False) != with_space
    assert tok.encode("dog", add_special_tokens=False, add_prefix_space=True) == with_space
    assert tok.encode(" dog", add_special_tokens=False, add_prefix_space=True) == with_space
    assert tok.tokenize(' the " dog "') == ["Ġthe", 'Ġ"', "Ġdog", 'Ġ"']


def test_encode_batch_pads_right(tok: OFATokenizer) -> None:
    texts = [" a dog", " the red square on the left of the big circle", " cat"]
    ids, mask = tok.encode_batch(texts)
    rows = [tok.encode(t) for t in texts]
    assert ids.dtype == mask.dtype == torch.long
    assert ids.shape == mask.shape == (3, max(len(r) for r in rows))
    for i, row in enumerate(rows):
        assert ids[i, : len(row)].tolist() == row
        assert (ids[i, len(row) :] == tok.pad_token_id).all()
        assert mask[i].tolist() == [1] * len(row) + [0] * (ids.shape[1] - len(row))
    assert tok.batch_decode(ids) == texts


def test_encode_batch_truncates_keeping_eos(tok: OFATokenizer) -> None:
    ids, mask = tok.encode_batch([" the red square on the left of the big circle", " cat"], max_length=5)
    assert ids.shape == (2, 5)
    assert ids[0].tolist()[0] == tok.bos_token_id and ids[0].tolist()[-1] == tok.eos_token_id
    assert mask[0].tolist() == [1] * 5
    with pytest.raises(RobustOFAError, match="max_length"):
        tok.encode(" cat", max_length=1)
    with pytest.raises(RobustOFAError, match="list of strings"):
        tok.encode_batch(" cat")  # type: ignore[arg-type]


def test_bin_tokens(tok: OFATokenizer) -> None:
    off = tok.bin_offset
    assert tok.bin_token_id(0) == off and tok.bin_token_id(999) == off + 999
    assert tok.is_bin(off) and tok.is_bin(off + 999)
    assert not tok.is_bin(off - 1) and not tok.is_bin(off + 1000)
    assert tok.bin_index(off + 42) == 42
    assert tok.bin_token_ids().tolist() == list(range(off, off + 1000))
    # OFA's grounding target string; whitespace around bins is dropped, as in OFA's HF port.
    ids = tok.encode("<bin_12> <bin_40>  <bin_300>\n<bin_511>", add_special_tokens=False)
    assert ids == [off + 12, off + 40, off + 300, off + 511]
    assert tok.decode(ids) == "<bin_12> <bin_40> <bin_300> <bin_511>"
    assert tok.decode([tok.bos_token_id, *ids, tok.eos_token_id]) == "<bin_12> <bin_40> <bin_300> <bin_511>"
    assert tok.decode([*tok.encode(" region", add_special_tokens=False), off + 1]) == " region <bin_1>"
    for bad in (
        lambda: tok.bin_token_id(1000),
        lambda: tok.bin_index(off - 1),
        lambda: tok.encode("<bin_1000>"),
    ):
        with pytest.raises(RobustOFAError):
            bad()
    with pytest.raises(RobustOFAError, match="code"):
        tok.encode("<code_0>")  # this tokenizer has 0 code tokens


def test_special_tokens_in_text_and_decode(tok: OFATokenizer) -> None:
    ids = tok.encode(" a <mask> dog", add_special_tokens=False)
    assert tok.mask_token_id in ids
    assert tok.decode(ids) == " a dog"
    assert tok.decode(ids, skip_special_tokens=False) == " a<mask> dog"
    assert tok.decode(torch.tensor([0, 1, 1])) == ""
    with pytest.raises(RobustOFAError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(RobustOFAError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


# ---------------------------------------------------------------------------- files
def test_save_load_round_trip(tok: OFATokenizer, tok_dir: Path, tmp_path: Path) -> None:
    tok5 = OFATokenizer.from_pretrained(tok_dir, num_codes=5, num_bins=20)
    out = tok5.save_pretrained(tmp_path / "saved")
    for name in (VOCAB_FILE, MERGES_FILE):
        assert (out / name).read_bytes() == (tok_dir / name).read_bytes()
    again = OFATokenizer.from_pretrained(out)
    assert (again.num_codes, again.num_bins, again.vocab_size) == (5, 20, tok5.vocab_size)
    assert again.encode(SENTENCES[1]) == tok.encode(SENTENCES[1])
    tok5.save_pretrained(out)  # saving over itself is fine


def test_train_bpe_deterministic(tmp_path: Path) -> None:
    corpus = _corpus(600)
    train_bpe(corpus, tmp_path / "a", vocab_size=400)
    train_bpe(iter(corpus), tmp_path / "b", vocab_size=400)
    for name in (VOCAB_FILE, MERGES_FILE, CONFIG_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    merges = (tmp_path / "a" / MERGES_FILE).read_text(encoding="utf-8")
    assert merges.startswith("#version: 0.2\n") and merges.endswith("\n")
    with pytest.raises(RobustOFAError, match="vocab_size"):
        train_bpe(corpus, tmp_path / "c", vocab_size=100)


@pytest.mark.parametrize("missing", [VOCAB_FILE, MERGES_FILE])
def test_missing_file(tok_dir: Path, tmp_path: Path, missing: str) -> None:
    for name in (VOCAB_FILE, MERGES_FILE):
        if name != missing:
            (tmp_path / name).write_bytes((tok_dir / name).read_bytes())
    with pytest.raises(RobustOFAError, match=missing):
        OFATokenizer.from_pretrained(tmp_path)


def test_bad_files(tok_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RobustOFAError, match="not found"):
        OFATokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / MERGES_FILE).write_bytes((tok_dir / MERGES_FILE).read_bytes())
    vocab = json.loads((tok_dir / VOCAB_FILE).read_text(encoding="utf-8"))
    vocab["<pad>"], vocab["<s>"] = 0, 1
    (tmp_path / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(RobustOFAError, match="<s>"):
        OFATokenizer.from_pretrained(tmp_path)
    (tmp_path / VOCAB_FILE).write_bytes((tok_dir / VOCAB_FILE).read_bytes())
    (tmp_path / CONFIG_FILE).write_text('{"num_bins": -1}', encoding="utf-8")
    with pytest.raises(RobustOFAError, match="num_bins"):
        OFATokenizer.from_pretrained(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{oops", encoding="utf-8")
    with pytest.raises(RobustOFAError, match=CONFIG_FILE):
        OFATokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------- instructions
def test_instruction_templates() -> None:
    assert (
        instruction("grounding", "The Red Square")
        == ' which region does the text " the red square " describe?'
    )
    assert instruction("ve", "A dog runs.") == ' does the image describe " a dog runs. "?'
    assert (
        instruction("ve", "A dog runs", premise="Two dogs play in the snow")
        == ' can image and text1 " two dogs play in the snow " imply text2 " a dog runs "?'
    )
    assert instruction("vqa", "What color is the Car") == " what color is the car?"
    assert instruction("vqa", "What color is the car?") == " what color is the car?"
    assert instruction("caption", "ignored") == instruction("caption") == " what does the image describe?"
    assert instruction("refcoco", "x") == instruction("grounding", "x")
    assert instruction("SNLI_VE", "x") == instruction("ve", "x")


def test_instruction_errors() -> None:
    with pytest.raises(RobustOFAError, match="unknown task"):
        instruction("detection", "x")
    with pytest.raises(RobustOFAError, match="premise"):
        instruction("vqa", "x", premise="y")


def test_pre_caption_rules() -> None:
    assert pre_caption("...Man-in/Black, left!") == "man in black, left!"
    assert pre_caption("  guy   on  the\tleft\n") == "guy on the\tleft"
    assert pre_caption("<PERSON> on left") == "person on left"
    assert pre_question("<person> ok?") == "<person> ok?"
    assert pre_caption(" ".join(["w"] * 100)) == " ".join(["w"] * 80)
    assert pre_caption("a b c d", max_words=2) == "a b"
    assert (
        instruction("grounding", "a b c d", max_words=3) == ' which region does the text " a b c " describe?'
    )


def test_targets() -> None:
    assert [ve_answer(x) for x in ("entailment", "Contradiction", "neutral", "yes")] == [
        "yes",
        "no",
        "maybe",
        "yes",
    ]
    with pytest.raises(RobustOFAError, match="SNLI-VE"):
        ve_answer("unsure")
    assert target_text("ve", "entailment") == " yes"
    assert target_text("vqa", "2") == " 2"
    assert caption_target("A man, riding a horse.") == "A man riding a horse"
    assert target_text("caption", "a  man riding a horse!", max_words=3) == " a man riding"
    with pytest.raises(RobustOFAError, match="grounding"):
        target_text("grounding", "x")


def test_instruction_tokenizes_like_ofa(tok: OFATokenizer) -> None:
    """The prompt's first word gets the space-prefixed BPE form, and the quotes are 'Ġ"' tokens."""
    tokens = tok.tokenize(instruction("grounding", "Dog"))
    assert tokens[0] == "Ġwhich" and tokens.count('Ġ"') == 2 and tokens[-1] == "?"
