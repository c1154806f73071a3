"""OFA's task prompt templates and text clean-up, mirroring OFA's fairseq dataset code (``data/mm_data/*.py``).

Each task class (``robustbench_ofa.tasks``) builds its prompt and target text from these pieces
(``Task.prompt``, ``Task.answer_text``; ``tasks.instruction``/``tasks.target_text`` by task name).

Faithfulness matters: a finetuned or prompt-tuned OFA checkpoint only performs as reported when it sees
byte-for-byte the prompt it was trained with. Every prompt starts with a space because OFA's BPE
encodes the string verbatim (see ``tokenizer.py``, "Leading-space convention").

Text rules (``OFADataset.pre_caption`` / ``pre_question``), applied to expressions, hypotheses,
premises and questions, in this order:

1. lower-case;
2. strip leading ``, . ! ? * # : ; ~`` characters (leading only; trailing punctuation stays);
3. replace ``-`` and ``/`` with a space (and, for captions/expressions/hypotheses, ``<person>`` with
   ``person``, after lower-casing);
4. collapse each run of two or more whitespace characters into one space (a *single* tab or newline is
   kept, as in OFA's ``re.sub(r"\\s{2,}", " ", ...)``);
5. strip trailing newlines, then leading/trailing spaces;
6. keep at most ``max_words`` space-separated words (OFA's ``max_src_length``: 80 in every released
   RefCOCO, SNLI-VE and VQA finetuning script, so 80 here).

VQA additionally appends ``?`` unless the cleaned question already ends with one. Captioning's prompt is
fixed. OFA's VQA finetuning also appended detected objects (``" object: …"``, ``--add-object``); that
needs an object detector and is not reproduced here.
"""

from __future__ import annotations

import re
import string

from robustbench_ofa.errors import RobustOFAError

DEFAULT_MAX_WORDS = 80
# SNLI-VE labels as OFA's SnliVeDataset maps them to answer words.
VE_LABEL_TO_ANSWER: dict[str, str] = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}
VE_ANSWERS: tuple[str, ...] = ("yes", "no", "maybe")

GROUNDING_TEMPLATE = ' which region does the text " {} " describe?'
VE_TEMPLATE = ' does the image describe " {} "?'
VE_PREMISE_TEMPLATE = ' can image and text1 " {} " imply text2 " {} "?'
VQA_TEMPLATE = " {}"
CAPTION_PROMPT = " what does the image describe?"

_LEADING_PUNCT = ",.!?*#:;~"
_MULTI_SPACE = re.compile(r"\s{2,}")
_PUNCT_TABLE = str.maketrans({c: None for c in string.punctuation})


def _clean(text: str, max_words: int, person: bool) -> str:
    """Shared body of OFA's ``pre_caption``/``pre_question`` (rules 1-6 of the module docstring)."""
    text = text.lower().lstrip(_LEADING_PUNCT).replace("-", " ").replace("/", " ")
    if person:
        text = text.replace("<person>", "person")
    text = _MULTI_SPACE.sub(" ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    return text


def pre_caption(caption: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """OFA's clean-up for referring expressions, hypotheses and premises (includes ``<person>``)."""
    return _clean(caption, max_words, person=True)


def pre_question(question: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """OFA's clean-up for VQA questions (no ``<person>`` replacement)."""
    return _clean(question, max_words, person=False)


def ve_answer(label: str) -> str:
    """Answer word for an SNLI-VE label (``entailment``->``yes``, …); ``yes/no/maybe`` pass through."""
    key = label.strip().lower()
    if key in VE_ANSWERS:
        return key
    if key not in VE_LABEL_TO_ANSWER:
        raise RobustOFAError(
            f"unknown SNLI-VE label '{label}': expected one of {', '.join(VE_LABEL_TO_ANSWER)}"
        )
    return VE_LABEL_TO_ANSWER[key]


def caption_target(caption: str, max_words: int | None = None) -> str:
    """OFA's caption target clean-up: drop ASCII punctuation, normalise spaces, keep ``max_words`` words.

    Mirrors ``CaptionDataset`` (training: ``max_tgt_length`` words; evaluation: no truncation).
    OFA does *not* lower-case caption targets (its COCO TSVs are already lower-case).
    """
    words = caption.translate(_PUNCT_TABLE).split()
    if max_words is not None:
        words = words[:max_words]
    return " ".join(words)
