"""OFA's tokenizer: BART byte-level BPE plus OFA's image-code and location-bin tokens.

Why a wrapper and not a ``BartTokenizer`` subclass with ``add_tokens``: the id layout of the added
tokens *is* the model's output space (grounding decodes ``<bin_i>`` ids straight into coordinates), so it
must not depend on how a given transformers release orders, strips or skips added tokens. The BPE part is
delegated to transformers' ``BartTokenizer`` unchanged, so every plain-text token id is exactly what OFA's
HF port (``OFATokenizer(BartTokenizer)``) and the fairseq GPT-2 BPE + ``dict.txt`` produce.

Id layout (the real OFA vocabulary in brackets)::

    0..3                      <s> <pad> </s> <unk>                     (same)
    4..V-1                    BPE tokens from vocab.json               (V = 50265, incl. <mask>)
    V (only if absent)        <mask>                                   (50264, already in vocab.json)
    code_offset + i           <code_i>, i < num_codes                  (50265 + i, 8192 codes)
    bin_offset + i            <bin_i>,  i < num_bins                   (58457 + i, 1000 bins)
    vocab_size                total                                    (59457)

Leading-space convention: text is encoded *verbatim*. Byte-level BPE folds a preceding space into the
next word (``" which"`` -> ``Ġwhich``), so ``"which"`` and ``" which"`` get different ids. Every string
OFA feeds its BPE starts with a space (instructions such as ``' which region does the text " … "
describe?'``, targets such as ``" yes"`` or ``" {caption}"``) and neither fairseq nor the HF port adds
one. :func:`robustbench_ofa.models.instructions.instruction` returns strings that already start with
the space; pass ``add_prefix_space=True`` to :meth:`OFATokenizer.encode` / ``encode_batch`` to add it to
answers or captions that lack it. Nothing is lower-cased here: OFA lower-cases in its dataset code
(mirrored in ``instructions.py``), not in the tokenizer.

Tokens written in the text: ``<s> <pad> </s> <unk> <mask> <code_i> <bin_i>`` are recognised as single
tokens (as BartTokenizer and OFA's HF port do). Whitespace around ``<code_i>``/``<bin_i>`` is dropped on
both sides (what the HF port's transformers did for tokens added with ``add_tokens``, and what fairseq's
whitespace-split ``use_bpe=False`` path did for ``"<bin_1> <bin_2> ..."`` targets); whitespace before
``<mask>`` is dropped (BART's ``lstrip=True``); ``<s> <pad> </s> <unk>`` strip nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustbench_ofa.errors import RobustOFAError

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "ofa_tokenizer_config.json"
MERGES_HEADER = "#version: 0.2"


@dataclass(frozen=True)
class OFASpecialTokens:
    """Special token strings and the id layout of the released OFA vocabulary.

    The ``ofa_*`` ids hold for OFA-Sys checkpoints only; a tokenizer trained with :func:`train_bpe`
    has the same special ids 0..3 but its own offsets (read them from the tokenizer's properties).
    """

    bos: str = "<s>"
    pad: str = "<pad>"
    eos: str = "</s>"
    unk: str = "<unk>"
    mask: str = "<mask>"
    bos_id: int = 0
    pad_id: int = 1
    eos_id: int = 2
    unk_id: int = 3
    ofa_mask_id: int = 50264
    ofa_code_offset: int = 50265
    ofa_bin_offset: int = 58457
    ofa_vocab_size: int = 59457
    ofa_num_codes: int = 8192
    ofa_num_bins: int = 1000

    def code(self, i: int) -> str:
        """Text form of image-code token ``i``."""
        return f"<code_{i}>"

    def bin(self, i: int) -> str:
        """Text form of location-bin token ``i``."""
        return f"<bin_{i}>"


OFA_SPECIAL = OFASpecialTokens()
DEFAULT_NUM_CODES = OFA_SPECIAL.ofa_num_codes
DEFAULT_NUM_BINS = OFA_SPECIAL.ofa_num_bins

_BASE_SPECIALS = (OFA_SPECIAL.bos, OFA_SPECIAL.pad, OFA_SPECIAL.eos, OFA_SPECIAL.unk)
# One pattern for every token that may be written literally in the text; group 1/2 = code/bin index.
_SPECIAL_RE = re.compile(r"<s>|<pad>|</s>|<unk>|<mask>|<code_(\d+)>|<bin_(\d+)>")
_ADDED_RE = re.compile(r"<(code|bin)_(\d+)>")


def _lazy_bart_class() -> Any:
    """Import BartTokenizer on first use: transformers is slow to import and many callers never need it."""
    from transformers import BartTokenizer

    return BartTokenizer


class OFATokenizer:
    """BART BPE + ``<mask>`` + ``<code_i>`` + ``<bin_i>`` with OFA's id layout (see module docstring)."""

    def __init__(
        self,
        vocab_file: str | Path,
        merges_file: str | Path,
        num_codes: int = DEFAULT_NUM_CODES,
        num_bins: int = DEFAULT_NUM_BINS,
    ) -> None:
        self._vocab_file = Path(vocab_file)
        self._merges_file = Path(merges_file)
        for path in (self._vocab_file, self._merges_file):
            if not path.is_file():
                raise RobustOFAError(f"tokenizer file not found: {path}")
        self._num_codes = _check_count("num_codes", num_codes, "OFATokenizer")
        self._num_bins = _check_count("num_bins", num_bins, "OFATokenizer")
        self._bart = _load_bart(self._vocab_file, self._merges_file)
        self._bpe_tokens = _check_bpe_vocab(self._bart.encoder, self._vocab_file)
        mask_id = self._bart.encoder.get(OFA_SPECIAL.mask)
        self._mask_in_bpe = mask_id is not None
        self._mask_id = mask_id if mask_id is not None else len(self._bpe_tokens)
        self._code_offset = len(self._bpe_tokens) + (0 if self._mask_in_bpe else 1)
        self._bin_offset = self._code_offset + self._num_codes

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls, directory: str | Path, num_codes: int | None = None, num_bins: int | None = None
    ) -> OFATokenizer:
        """Load ``vocab.json`` + ``merges.txt`` (+ optional ``ofa_tokenizer_config.json``) from a folder.

        OFA-Sys checkpoint folders carry no config file; they get the released 8192 codes / 1000 bins.
        Explicit ``num_codes``/``num_bins`` override the file (for folders shared with another model).
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise RobustOFAError(f"tokenizer folder not found: {folder}")
        for name in (VOCAB_FILE, MERGES_FILE):
            if not (folder / name).is_file():
                raise RobustOFAError(
                    f"tokenizer file missing: {folder / name} (need {VOCAB_FILE} and {MERGES_FILE})"
                )
        config = _read_config(folder / CONFIG_FILE)
        return cls(
            folder / VOCAB_FILE,
            folder / MERGES_FILE,
            num_codes=config["num_codes"] if num_codes is None else num_codes,
            num_bins=config["num_bins"] if num_bins is None else num_bins,
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write vocab.json and merges.txt (byte-for-byte copies of the loaded files) and the config JSON."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for src, name in ((self._vocab_file, VOCAB_FILE), (self._merges_file, MERGES_FILE)):
            dst = folder / name
            if not (dst.exists() and dst.resolve() == src.resolve()):
                shutil.copyfile(src, dst)
        _write_config(folder / CONFIG_FILE, self._num_codes, self._num_bins)
        return folder

    # ------------------------------------------------------------------ id layout
    @property
    def bos_token_id(self) -> int:
        return OFA_SPECIAL.bos_id

    @property
    def pad_token_id(self) -> int:
        return OFA_SPECIAL.pad_id

    @property
    def eos_token_id(self) -> int:
        return OFA_SPECIAL.eos_id

    @property
    def unk_token_id(self) -> int:
        return OFA_SPECIAL.unk_id

    @property
    def mask_token_id(self) -> int:
        return self._mask_id

    @property
    def code_offset(self) -> int:
        """Id of ``<code_0>``."""
        return self._code_offset

    @property
    def num_codes(self) -> int:
        return self._num_codes

    @property
    def bin_offset(self) -> int:
        """Id of ``<bin_0>``; ``<bin_i>`` = ``bin_offset + i``."""
        return self._bin_offset

    @property
    def num_bins(self) -> int:
        return self._num_bins

    @property
    def vocab_size(self) -> int:
        """Total number of ids incl. mask, codes and bins: the model's embedding rows."""
        return self._bin_offset + self._num_bins

    @property
    def bart(self) -> Any:
        """The underlying transformers ``BartTokenizer`` (plain BPE only, no OFA tokens registered)."""
        return self._bart

    def __len__(self) -> int:
        return self.vocab_size

    def bin_token_id(self, i: int) -> int:
        """Id of ``<bin_i>``; raises if ``i`` is outside ``[0, num_bins)``."""
        if not 0 <= int(i) < self._num_bins:
            raise RobustOFAError(f"bin index {i} out of range [0, {self._num_bins})")
        return self._bin_offset + int(i)

    def code_token_id(self, i: int) -> int:
        """Id of ``<code_i>``; raises if ``i`` is outside ``[0, num_codes)``."""
        if not 0 <= int(i) < self._num_codes:
            raise RobustOFAError(f"code index {i} out of range [0, {self._num_codes})")
        return self._code_offset + int(i)

    def is_bin(self, token_id: int) -> bool:
        """True for ``<bin_i>`` ids."""
        return self._bin_offset <= int(token_id) < self.vocab_size

    def is_code(self, token_id: int) -> bool:
        """True for ``<code_i>`` ids."""
        return self._code_offset <= int(token_id) < self._bin_offset

    def bin_index(self, token_id: int) -> int:
        """``i`` for the id of ``<bin_i>``; raises for any other id."""
        if not self.is_bin(token_id):
            raise RobustOFAError(f"token id {token_id} is not a <bin_i> token")
        return int(token_id) - self._bin_offset

    def bin_token_ids(self) -> torch.Tensor:
        """All bin ids, ascending: handy for constraining grounding decoding to location tokens."""
        return torch.arange(self._bin_offset, self.vocab_size, dtype=torch.long)

    # ------------------------------------------------------------------ token <-> id
    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Token strings (BPE symbols in byte-level form, e.g. ``Ġdog``) for ``ids``."""
        return [self._id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of token strings; unknown strings map to ``<unk>`` as in BartTokenizer."""
        return [self._token_to_id(t) for t in tokens]

    def _id_to_token(self, token_id: int) -> str:
        if 0 <= token_id < len(self._bpe_tokens):
            return self._bpe_tokens[token_id]
        if token_id == self._mask_id:
            return OFA_SPECIAL.mask
        if self.is_code(token_id):
            return OFA_SPECIAL.code(token_id - self._code_offset)
        if self.is_bin(token_id):
            return OFA_SPECIAL.bin(token_id - self._bin_offset)
        raise RobustOFAError(f"token id {token_id} out of range [0, {self.vocab_size})")

    def _token_to_id(self, token: str) -> int:
        if token in self._bart.encoder:
            return self._bart.encoder[token]
        if token == OFA_SPECIAL.mask:
            return self._mask_id
        match = _ADDED_RE.fullmatch(token)
        if match is None:
            return self.unk_token_id
        index = int(match.group(2))
        return self.code_token_id(index) if match.group(1) == "code" else self.bin_token_id(index)

    # ------------------------------------------------------------------ encoding
    def tokenize(self, text: str, add_prefix_space: bool = False) -> list[str]:
        """Token strings of ``text`` (no ``<s>``/``</s>`` added)."""
        return self.convert_ids_to_tokens(
            self.encode(text, add_special_tokens=False, add_prefix_space=add_prefix_space)
        )

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        add_prefix_space: bool = False,
    ) -> list[int]:
        """Ids of ``text``, as ``<s> … </s>`` when ``add_special_tokens``.

        ``max_length`` truncates the body so the result (incl. ``<s>``/``</s>``) has at most that many
        ids; ``</s>`` is kept, as OFA always closes the source with it. ``add_prefix_space`` prepends
        one space when the text does not start with whitespace (see module docstring).
        """
        if add_prefix_space and text and not text[0].isspace():
            text = " " + text
        body = self._encode_body(text)
        if not add_special_tokens:
            return body if max_length is None else body[: _check_max_length(max_length, 0)]
        if max_length is not None:
            body = body[: _check_max_length(max_length, 2) - 2]
        return [self.bos_token_id, *body, self.eos_token_id]

    def encode_batch(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        add_prefix_space: bool = False,
        add_special_tokens: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, both LongTensor (B, L), right-padded with ``<pad>``.

        Each row is ``<s> … </s>`` (OFA's source layout); L is the longest row after truncation to
        ``max_length`` (no padding up to ``max_length``). The mask is 1 on real tokens, 0 on padding.
        """
        if isinstance(texts, str):
            raise RobustOFAError("encode_batch expects a list of strings, got a single string")
        rows = [self.encode(t, add_special_tokens, max_length, add_prefix_space) for t in texts]
        return self.pad_batch(rows)

    def pad_batch(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists with ``<pad>`` into ``(ids, mask)`` LongTensors (B, max len)."""
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask

    def _encode_body(self, text: str) -> list[int]:
        """Split on literal special/added tokens, apply their whitespace stripping, BPE the rest."""
        ids: list[int] = []
        pos = 0
        for match in _SPECIAL_RE.finditer(text):
            token = match.group(0)
            strip_left, strip_right = _strip_rules(token)
            segment = text[pos : match.start()]
            ids.extend(self._bpe_ids(segment.rstrip() if strip_left else segment))
            ids.append(self._token_to_id(token))
            pos = match.end()
            if strip_right:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
        ids.extend(self._bpe_ids(text[pos:]))
        return ids

    def _bpe_ids(self, text: str) -> list[int]:
        if not text:
            return []
        encoder = self._bart.encoder
        return [encoder.get(t, self.unk_token_id) for t in self._bart.tokenize(text)]

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``.

        ``skip_special_tokens`` drops ``<s> <pad> </s> <unk> <mask>``. ``<code_i>``/``<bin_i>`` are never
        dropped (as in OFA's HF port, where they are ordinary added tokens): they are rendered as their
        text, separated by a space from their neighbours, e.g. ``"<bin_12> <bin_40> <bin_300> <bin_511>"``.
        Plain text keeps its leading space (``" yes"``); callers ``.strip()`` as OFA's evaluation does.
        """
        pieces: list[tuple[str, bool]] = []  # (text, is_added_token)
        run: list[str] = []
        for token_id in _as_id_list(ids):
            token = self._id_to_token(token_id)
            if (
                0 <= token_id < len(self._bpe_tokens)
                and token not in _BASE_SPECIALS
                and token != OFA_SPECIAL.mask
            ):
                run.append(token)
                continue
            if run:
                pieces.append((self._bart.convert_tokens_to_string(run), False))
                run = []
            if skip_special_tokens and (token in _BASE_SPECIALS or token == OFA_SPECIAL.mask):
                continue
            pieces.append((token, self.is_code(token_id) or self.is_bin(token_id)))
        if run:
            pieces.append((self._bart.convert_tokens_to_string(run), False))
        return _join_pieces(pieces)

    def batch_decode(
        self, sequences: Iterable[Iterable[int]] | torch.Tensor, skip_special_tokens: bool = True
    ) -> list[str]:
        """:meth:`decode` for each row."""
        return [self.decode(seq, skip_special_tokens) for seq in sequences]

    def __repr__(self) -> str:
        return (
            f"OFATokenizer(bpe={len(self._bpe_tokens)}, mask={self._mask_id}, codes={self._num_codes}@"
            f"{self._code_offset}, bins={self._num_bins}@{self._bin_offset}, vocab_size={self.vocab_size})"
        )


# ---------------------------------------------------------------------- helpers
def _strip_rules(token: str) -> tuple[bool, bool]:
    """(strip whitespace before, strip after) for a literal token; see module docstring."""
    if token.startswith(("<code_", "<bin_")):
        return True, True
    if token == OFA_SPECIAL.mask:
        return True, False
    return False, False


def _join_pieces(pieces: list[tuple[str, bool]]) -> str:
    """Concatenate decoded pieces, putting one space on each side of code/bin tokens if none is there."""
    out = ""
    prev_added = False
    for text, added in pieces:
        if out and (added or prev_added) and not out[-1].isspace() and not text[:1].isspace():
            out += " "
        out += text
        prev_added = added
    return out


def _as_id_list(ids: Iterable[int] | torch.Tensor) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise RobustOFAError(f"decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


def _check_max_length(max_length: int, minimum: int) -> int:
    if max_length < minimum:
        raise RobustOFAError(f"max_length={max_length} is too small: need at least {minimum} (<s> and </s>)")
    return max_length


def _check_count(name: str, value: Any, source: str | Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RobustOFAError(f"{source}: '{name}' must be a non-negative integer, got {value!r}")
    return value


def _load_bart(vocab_file: Path, merges_file: Path) -> Any:
    """BartTokenizer with its default (BART/OFA) special tokens and no prefix space."""
    try:
        return _lazy_bart_class()(vocab_file=str(vocab_file), merges_file=str(merges_file))
    except (OSError, ValueError, UnicodeDecodeError, IndexError) as err:
        raise RobustOFAError(f"cannot read tokenizer files {vocab_file} / {merges_file}: {err}") from err


def _check_bpe_vocab(encoder: dict[str, int], vocab_file: Path) -> list[str]:
    """Id -> token list; insists on ids 0..N-1 and OFA's special ids, which the model's rows depend on."""
    tokens = [""] * len(encoder)
    for token, token_id in encoder.items():
        if not isinstance(token_id, int) or not 0 <= token_id < len(encoder) or tokens[token_id]:
            raise RobustOFAError(f"{vocab_file}: ids must be the distinct integers 0..{len(encoder) - 1}")
        tokens[token_id] = token
    for expected_id, token in enumerate(_BASE_SPECIALS):
        if encoder.get(token) != expected_id:
            raise RobustOFAError(
                f"{vocab_file}: '{token}' must have id {expected_id}, got {encoder.get(token)}"
            )
    return tokens


def _read_config(path: Path) -> dict[str, int]:
    """num_codes/num_bins from the config JSON; OFA-Sys defaults when the file is absent."""
    config = {"num_codes": DEFAULT_NUM_CODES, "num_bins": DEFAULT_NUM_BINS}
    if not path.is_file():
        return config
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RobustOFAError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise RobustOFAError(f"{path}: expected a JSON object with 'num_codes' and 'num_bins'")
    for key in config:
        if key in data:
            config[key] = _check_count(key, data[key], path)
    return config


def _write_config(path: Path, num_codes: int, num_bins: int) -> None:
    text = json.dumps({"num_bins": num_bins, "num_codes": num_codes}, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------- training
def train_bpe(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 2000,
    min_frequency: int = 1,
    num_codes: int = 0,
    num_bins: int = DEFAULT_NUM_BINS,
) -> OFATokenizer:
    """Train a small byte-level BPE in OFA/BART format and return it loaded as an :class:`OFATokenizer`.

    For tiny test models that cannot download BART's 50k vocabulary. ``vocab_size`` counts the whole
    BPE vocabulary: ``<s> <pad> </s> <unk>`` (ids 0..3), the 256 byte symbols, the learned merges and
    ``<mask>`` (last BPE id, as in BART); codes and bins come on top. The trainer may stop below
    ``vocab_size`` on a small corpus. Each text is trained on with a leading space added (as OFA
    always encodes its text), so the vocabulary learns the ``Ġword`` forms OFA will look up.

    Output is deterministic (same corpus -> byte-identical files): ids are fixed by the trainer's merge
    order, the JSON is written in id order, and nothing time- or path-dependent is stored.
    """
    minimum = len(_BASE_SPECIALS) + 256 + 1
    if vocab_size < minimum:
        raise RobustOFAError(f"train_bpe: vocab_size must be >= {minimum} (4 specials + 256 bytes + <mask>)")
    _check_count("num_codes", num_codes, "train_bpe")
    _check_count("num_bins", num_bins, "train_bpe")
    vocab, merges = _run_bpe_trainer(texts, vocab_size - 1, min_frequency)
    vocab[OFA_SPECIAL.mask] = len(vocab)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _write_bpe_files(folder, vocab, merges)
    _write_config(folder / CONFIG_FILE, num_codes, num_bins)
    return OFATokenizer.from_pretrained(folder)


def _run_bpe_trainer(
    texts: Iterable[str], vocab_size: int, min_frequency: int
) -> tuple[dict[str, int], list[str]]:
    """Train with the ``tokenizers`` library; return (token -> id, merges as "a b" lines in rank order)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # GPT-2 split regex + byte-to-unicode mapping: the same pre-tokenisation BartTokenizer applies.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(_BASE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((str(t) for t in texts), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab = {str(k): int(v) for k, v in model["vocab"].items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return vocab, merges


def _write_bpe_files(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    """vocab.json (id order, UTF-8) and merges.txt (header line + one merge a line + final newline).

    BartTokenizer drops the first and the last line of merges.txt, hence header and trailing newline.
    """
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    (folder / VOCAB_FILE).write_text(json.dumps(ordered, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / MERGES_FILE).write_text("\n".join([MERGES_HEADER, *merges]) + "\n", encoding="utf-8")
