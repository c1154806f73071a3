"""OFA's task prompts and text clean-up, mirroring OFA's fairseq dataset code (``data/mm_data/*.py``).

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

TASKS: tuple[str, ...] = ("grounding", "ve", "vqa", "caption")
TASK_ALIASES: dict[str, str] = {
    "refcoco": "grounding",
    "visual_grounding": "grounding",
    "snli_ve": "ve",
    "visual_entailment": "ve",
    "captioning": "caption",
}
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


def canonical_task(task: str) -> str:
    """``task`` as one of :data:`TASKS` (aliases such as ``refcoco``/``snli_ve`` accepted)."""
    key = task.strip().lower()
    key = TASK_ALIASES.get(key, key)
    if key not in TASKS:
        raise RobustOFAError(f"unknown task '{task}': expected one of {', '.join(TASKS)}")
    return key


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


def instruction(
    task: str, text: str = "", premise: str | None = None, max_words: int = DEFAULT_MAX_WORDS
) -> str:
    """OFA's source prompt for ``task``; starts with a space, ready for the tokenizer.

    - grounding: ``' which region does the text " {expr} " describe?'``
    - ve: ``' does the image describe " {hyp} "?'``, or with ``premise``
      ``' can image and text1 " {premise} " imply text2 " {hyp} "?'`` (OFA's ``--add-caption``, which
      its SNLI-VE finetuning used)
    - vqa: ``' {question}'`` with ``?`` appended unless already there
    - caption: ``' what does the image describe?'`` (``text`` is ignored)
    """
    kind = canonical_task(task)
    if premise is not None and kind != "ve":
        raise RobustOFAError(f"instruction: a premise is only used by the 've' task, not '{kind}'")
    if kind == "grounding":
        return GROUNDING_TEMPLATE.format(pre_caption(text, max_words))
    if kind == "ve":
        hypothesis = pre_caption(text, max_words)
        if premise is None:
            return VE_TEMPLATE.format(hypothesis)
        return VE_PREMISE_TEMPLATE.format(pre_caption(premise, max_words), hypothesis)
    if kind == "vqa":
        question = pre_question(text, max_words)
        return VQA_TEMPLATE.format(question if question.endswith("?") else question + "?")
    return CAPTION_PROMPT


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


def target_text(task: str, answer: str, max_words: int | None = None) -> str:
    """Decoder target text as OFA builds it: ``" {answer}"`` (leading space, like the prompts).

    ve maps SNLI-VE labels to yes/no/maybe; caption applies :func:`caption_target`; vqa uses the answer
    as given (OFA takes answers verbatim from its answer vocabulary). Grounding targets are
    ``<bin_i>`` tokens built from box coordinates elsewhere, so they are refused here.
    """
    kind = canonical_task(task)
    if kind == "grounding":
        raise RobustOFAError("target_text: grounding targets are <bin_i> tokens built from the box, not text")
    if kind == "ve":
        return " " + ve_answer(answer)
    if kind == "caption":
        return " " + caption_target(answer, max_words)
    return " " + answer
