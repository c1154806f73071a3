"""Text attacks that keep the answer: the generated benchmark's oracle, the antonym and ``--protect`` checks,
and the validity figure (would-be successes the checks rejected) in the store, the CSVs, the summary and
the report.

The attacked model is a micro OFA trained for a few seconds to memorise a handful of generated
VE/VQA/grounding samples (so some are clean-correct, the attacks run, and its answers hinge on words).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import MODEL_SEED
from PIL import Image

from attacks.text.budget import TextBudget, edits
from attacks.text.options import TextOptions, parse_protect
from attacks.text.resources import require
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.manifest import read_manifest
from robustbench_ofa.data.synthetic_oracle import Oracle, parse, protected_vocabulary, read
from robustbench_ofa.data.types import Sample
from robustbench_ofa.zoo.recipe import EMBEDDED_SCENE

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

TASKS = ("ve", "vqa", "grounding")
SCENE = syn.SceneConfig(image_size=32, **EMBEDDED_SCENE)


@pytest.fixture(scope="session")
def text_resources():
    return require()


# --- the oracle itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [syn.SceneConfig(), SCENE], ids=["default-scene", "embedded-scene"])
def test_oracle_reads_every_generated_text_as_the_generator_labelled_it(config):
    for split in ("train", "downstream_test"):
        for task in TASKS:
            for s in syn.generate(task, split, 60, config):
                o = Oracle(s)
                assert o.truth(s.text) == o.expected(), (s.uid, s.meta["kind"], s.text)


def _sample(task: str, text: str, label=None, box=None) -> Sample:
    """A hand-made generated-benchmark sample: a large yellow diamond left of a small purple circle."""
    scene = [{"shape": "diamond", "color": "yellow", "size": "large", "box": [4.0, 30.0, 40.0, 66.0]},
             {"shape": "circle", "color": "purple", "size": "small", "box": [70.0, 36.0, 90.0, 56.0]}]
    s = Sample(uid=f"hand-{task}", task=task, image=Image.new("RGB", (96, 96)), text=text, label=label,
               box=box, meta={"source": "synthetic", "scene": scene})
    if task == "vqa":
        s.answers = [label] * 10
    return s


@pytest.mark.parametrize("task, text, label, edited, truth", [
    ("ve", "there is a large yellow diamond", "yes", "there is a small yellow diamond", "no"),
    ("ve", "there is a large yellow diamond", "yes", "there is a heavy yellow diamond", "maybe"),
    ("ve", "there is a large yellow diamond", "yes", "there is a wooden large yellow diamond", "maybe"),
    ("ve", "there is a large yellow diamond", "yes", "there is a large yellow infield", None),
    ("ve", "the diamond is left of the circle", "yes", "the diamond is right of the circle", "no"),
    ("ve", "the diamond is left of the circle", "yes", "the diamond is behind the circle", "maybe"),
    ("vqa", "is there a purple circle?", "yes", "is there a blue circle?", "no"),
    ("vqa", "what color is the large diamond?", "yellow", "what semblance is the large diamond?", None),
    ("vqa", "what color is the large diamond?", "yellow", "what shape is the large diamond?", "diamond"),
    ("vqa", "how many diamonds are there?", "1", "how many circles are there?", "1"),
    ("vqa", "what is left of the circle?", "diamond", "what is right of the circle?", None),
    ("grounding", "the large diamond", None, "the small diamond", None),
    ("grounding", "the object left of the purple circle", None, "the object right of the purple circle", None),
    ("grounding", "the large diamond", None, "the large object", (4.0, 30.0, 40.0, 66.0)),
])
def test_oracle_detects_label_changing_edits(task, text, label, edited, truth):
    box = (4.0, 30.0, 40.0, 66.0) if task == "grounding" else None
    o = Oracle(_sample(task, text, label, box))
    assert o.keeps_truth(text)
    assert o.truth(edited) == truth
    assert o.keeps_truth(edited) is (truth == o.expected())


def test_oracle_reading_variants_invisible_characters_and_typos():
    o = Oracle(_sample("vqa", "what color is the large diamond?", "yellow"))
    for same in ("what colour is the big diamond?", "What color is the large diamond", "what color is the "
                 "lar\u200bge diamond?", "what color is the large rhombus?", "what color is the large diamondX\b?"):
        assert o.keeps_truth(same), same
    assert read("the squrae") is None  # no typo reading without a word list
    typo = Oracle(_sample("vqa", "what color is the large diamond?", "yellow"), is_word=lambda w: w == "gold")
    assert typo.keeps_truth("what color is the large diamnod?")
    ve = Oracle(_sample("ve", "the large diamond is cold", "maybe"), is_word=lambda w: w == "gold")
    assert ve.truth("the large diamond is gold") is None  # a real word is never read as another one
    assert parse("ve", "the large diamond is golden") is None


def test_protected_vocabulary_covers_the_generator_content_words():
    words = protected_vocabulary()
    assert {"purple", "diamond", "diamonds", "large", "left", "above", "wooden", "wood", "color", "two"} <= words
    assert not {"the", "is", "there", "a", "of"} & words


# --- attacks on the generated benchmark ---------------------------------------------------------------


@pytest.fixture(scope="module")
def syn_model(micro_tokenizer):
    """(model, {task: Task}, {task: samples}): a micro OFA that memorised 8 generated samples per task."""
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.tasks import get_task
    from robustbench_ofa.training.config import TrainConfig
    from robustbench_ofa.training.loop import train

    data = {t: syn.generate(t, "downstream_test", 8, SCENE) for t in TASKS}
    cfg = OFAConfig(vocab_size=micro_tokenizer.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    resnet_layers=[1, 1, 1], resnet_base_planes=8, max_position_embeddings=128, dropout=0.0)
    torch.manual_seed(MODEL_SEED)
    model = OFAModel(cfg)
    tasks = {t: get_task(t, micro_tokenizer, 32, beam=1) for t in TASKS}
    train(model, tasks, data, TrainConfig(lr=5e-3, batch_size=8, max_steps=150, warmup_steps=5, num_threads=2,
                                          seed=MODEL_SEED), progress=False)
    return model.eval(), tasks, data


def _clean_correct(model, task, samples, k):
    preds = task.predict(model, task.collate(samples))
    return [(s, p.score) for s, p in zip(samples, preds) if p.correct][:k]


def _attack(model, task, chosen, name, budget):
    from attacks.text.engine import run_text_attack

    samples = [s for s, _ in chosen]
    return run_text_attack(name, model, task, samples, task.collate(samples).images, budget,
                           list(range(len(samples))), [score for _, score in chosen])


@pytest.mark.parametrize("name, k, queries", [("pwws", 4, 80), ("textfooler-glove", 2, 40)])
def test_no_success_on_the_generated_benchmark_changes_the_oracle_answer(syn_model, text_resources, name, k,
                                                                          queries):
    model, tasks, data = syn_model
    rejected = 0
    for t in TASKS:
        chosen = _clean_correct(model, tasks[t], data[t], k)
        assert chosen, t
        # --protect none: the oracle alone stands between the search and a relabelling
        for (s, _), o in zip(chosen, _attack(model, tasks[t], chosen, name, TextBudget(queries=queries,
                                                                                       protect=()))):
            if o.status == "successful":
                assert Oracle(s).keeps_truth(o.adversarial), (s.text, o.adversarial)
            # nothing protected; the word-substitution checks (pos, sense) come after the oracle
            assert set(o.rejected_by) <= {"oracle", "antonym", "cohyponym", "pos", "sense"}
            rejected += o.rejected_by.get("oracle", 0)
    assert rejected > 0  # the search did meet label-changing "successes", and the oracle rejected them


def test_by_default_the_generated_vocabulary_is_protected(syn_model, text_resources):
    model, tasks, data = syn_model
    chosen = _clean_correct(model, tasks["vqa"], data["vqa"], 3)
    words = protected_vocabulary()
    for o in _attack(model, tasks["vqa"], chosen, "pwws", TextOptions().budget()):
        changed = [w for old, _ in edits(o.original, o.adversarial) for w in old]
        assert not any(w.strip("?").lower() in words for w in changed), (o.original, o.adversarial)


def _text_attacks() -> list[str]:
    """Every registered attack that edits the text (text recipes and joint attacks): a new one is tested
    without editing this file."""
    from attacks import specs

    return [s.name for s in specs() if s.modality != "image"]


@pytest.mark.parametrize("name", _text_attacks())
def test_every_registered_text_attack_flips_an_answer_a_word_edit_can_flip(syn_model, text_resources, name):
    """Each text or joint attack fools at least one clean-correct sample with one word, as the evaluator
    judges it (the task's own prediction on the adversarial text and image): one that only ran (the smoke
    tests) could return the original texts and pass. The samples are the model's generated VQA questions,
    copied as data of no known origin: the generated benchmark's oracle (tested above) would veto the
    edits that change the true answer, which leaves the word-swap recipes 0-3 successes on some training
    seeds; without it, and with nothing protected, every recipe flipped 3-7 of the 6-7 questions over the
    syn model's seeds 0-3 (AVX2 kernels) and seed 0 under the portable kernels."""
    import dataclasses

    from attacks import ATTACKS, AttackParams
    from attacks.text.queries import source_ids
    from robustbench_ofa.tasks.base import TaskBatch

    model, tasks, data = syn_model
    task = tasks["vqa"]
    plain = [dataclasses.replace(s, meta={**s.meta, "source": "copied"}) for s in data["vqa"]]
    chosen = _clean_correct(model, task, plain, 8)
    samples, scores = [s for s, _ in chosen], [score for _, score in chosen]
    batch = task.collate(samples)
    if ATTACKS.get(name).modality == "text":
        outs = _attack(model, task, chosen, name, TextBudget(queries=40, protect=()))
        images = batch.images
    else:  # a joint attack: its own runner, its text stage under the same budget
        params = AttackParams.of(steps=5, text_queries=40, text_protect="none")
        joint = ATTACKS.get(name).runner(model, task, batch, 2 / 255, params, list(range(len(samples))), scores)
        outs, images = joint.texts, joint.adv_images
    assert all(o.words_changed <= 1 and "oracle" not in o.rejected_by for o in outs)
    ids = source_ids(task, samples, [o.adversarial for o in outs])
    preds = task.predict(model, TaskBatch(samples, ids, batch.images, batch.targets), images=images)
    assert any(not p.correct for p in preds), [o.status for o in outs]


# --- any data: antonyms and --protect on a hand-written manifest --------------------------------------

#: Hand-written hypotheses (not the generator's sentence forms: no oracle), full of words with WordNet
#: antonyms; each appears once per label, so whatever the model answers, one copy is clean-correct and
#: attacked. The model is the generated-benchmark micro model, whose answers hinge on such words.
HYPOTHESES = ["the large circle is left of the small square", "the hot diamond is above the cold cross",
              "the old square is heavy", "the small diamond is right of the large circle"]
PROTECT = "circle,square,diamond,cross,triangle"


def _manifest(tmp_path, images) -> list[Sample]:
    lines = []
    for i, text in enumerate(HYPOTHESES):
        images[i].save(tmp_path / f"img{i}.png")
        for label in ("entailment", "contradiction", "neutral"):
            lines.append(json.dumps({"id": f"h{i}-{label}", "image": f"img{i}.png", "hypothesis": text,
                                     "label": label}))
    path = tmp_path / "hand.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return list(read_manifest(path, "ve"))


def test_antonym_and_protect_checks_hold_on_a_hand_written_manifest(syn_model, text_resources, tmp_path):
    """No success swaps in an antonym or changes a protected word, and both checks really reject would-be
    successes. Which words this micro model's answers hinge on moves with the CPU's kernels (one run met a
    single would-be success on a protected word, another none), so the protected words are chosen from
    what the unprotected search succeeded with: protected, the same deterministic search meets those
    successes again and must reject them, on any CPU."""
    from attacks.text.validity import lexicon

    model, tasks, data = syn_model
    samples = _manifest(tmp_path, [s.image for s in data["ve"]])
    assert all(s.meta.get("source") != "synthetic" for s in samples)
    chosen = _clean_correct(model, tasks["ve"], samples, len(samples))
    assert len(chosen) == len(HYPOTHESES)
    lex = lexicon(text_resources)

    def run(protect):
        outs = _attack(model, tasks["ve"], chosen, "textfooler-glove", TextBudget(queries=40, protect=protect))
        reasons: dict[str, int] = {}
        for o in outs:
            for why, n in o.rejected_by.items():
                reasons[why] = reasons.get(why, 0) + n
            if o.status != "successful":
                continue
            for old, new in edits(o.original, o.adversarial):
                assert not any(lex.are_antonyms(a, b) for a in old for b in new), (o.original, o.adversarial)
                assert not {w.lower() for w in old} & set(protect), (o.original, o.adversarial)
        assert "oracle" not in reasons  # not generated data: no oracle
        return outs, reasons

    free, free_reasons = run(())
    won = {w.lower() for o in free if o.status == "successful" for old, _ in edits(o.original, o.adversarial)
           for w in old}
    assert won  # the unprotected search fools this model (2 of 4 samples on every kernel set tried)
    _, reasons = run(tuple(sorted(won | set(parse_protect(PROTECT)))))
    assert reasons.get("protect", 0) > 0, reasons  # protected, the successes it had are rejected
    # both searches met would-be successes that swapped in an antonym (2+3, 2+3 and 3+4 on three kernel sets)
    assert free_reasons.get("antonym", 0) + reasons.get("antonym", 0) > 0, (free_reasons, reasons)
    assert lex.are_antonyms("hot", "cold") and lex.are_antonyms("large", "tiny") and not lex.are_antonyms("red", "blue")


def test_cohyponyms_are_sister_terms_not_synonyms(text_resources):
    """Sister terms under one direct hypernym (through the colour nouns for colour words) are rejected;
    synonyms (a shared synset), cousins ("cat" under feline, "dog" under canine) and a
    word with itself are not sister terms."""
    from attacks.text.validity import lexicon

    lex = lexicon(text_resources)
    for a, b in [("red", "blue"), ("purple", "yellow"), ("car", "truck"), ("Red", "blue?")]:
        assert lex.are_cohyponyms(a, b) and lex.are_cohyponyms(b, a), (a, b)
    for a, b in [("colour", "color"), ("big", "large"), ("picture", "image"), ("red", "red"), ("cat", "dog"),
                 ("circle", "")]:
        assert not lex.are_cohyponyms(a, b), (a, b)


def test_answer_bearing_words_are_protected_on_closed_answer_tasks(syn_model, text_resources, monkeypatch):
    """A question word that is an answer of the task's answer set carries the answer: by default no
    candidate may change it, ``--protect`` adds to it, ``--protect none`` removes it; and the text-attack
    engine hands the task's answer set to the checks (closed-answer tasks only)."""
    import attacks.text.validity as validity
    from attacks.text.components import ValidityGate

    sample = Sample(uid="hand-q", task="vqa", image=Image.new("RGB", (40, 30)), text="is there a red shape?",
                    answers=["yes"])
    answers = ["yes", "no", "red", "blue", "fire hydrant"]
    assert validity.answer_words(answers) == {"yes", "no", "red", "blue"}

    def reason(protect, candidate):
        gate = ValidityGate(validity.checks_for(sample, protect, text_resources, validity.answer_words(answers)))
        return gate.reason(sample.text, candidate)

    assert reason(None, "is there a blue shape?") == "cohyponym"  # a sister term, caught before protect
    assert reason(None, "is there a crimson shape?") == "protect"  # a synonym, but it carries the answer
    assert reason(None, "is there a rde shape?") == "protect"  # even a typo of it
    assert reason(None, "is there a red form?") is None  # not an answer word
    assert reason(("shape",), "is there a crimson shape?") == "protect"  # --protect adds to the answers
    assert reason((), "is there a crimson shape?") is None  # --protect none: nothing protected
    assert reason((), "is there a blue shape?") == "cohyponym"  # the sister-term check is not a protection

    seen = []
    real = validity.checks_for
    monkeypatch.setattr(validity, "checks_for", lambda *a: seen.append(a[3]) or real(*a))
    model, tasks, data = syn_model
    for t in ("vqa", "grounding"):
        chosen = _clean_correct(model, tasks[t], data[t], 1)
        _attack(model, tasks[t], chosen, "deepwordbug", TextBudget(queries=5))
    assert seen == [validity.answer_words(tasks["vqa"].answers), frozenset()]


def test_protect_option_parses_and_checks():
    from robustbench_ofa.configcli import validate
    from robustbench_ofa.errors import RobustOFAError

    assert parse_protect(None) is None and parse_protect("none") == () and parse_protect("Red, blue") == ("red", "blue")
    assert TextOptions(protect="red,blue").budget().protect == ("red", "blue")
    with pytest.raises(RobustOFAError, match="--protect"):
        validate(TextOptions(protect="left of"))


# --- the validity figure: store, CSV, summary, report ------------------------------------------------


def test_rejected_share_in_store_csv_summary_and_report(syn_model, text_resources, tmp_path):
    from attacks import AttackParams
    from reports.build import load_report
    from robustbench_ofa.evaluation.config import EvalConfig
    from robustbench_ofa.evaluation.outputs import write_aggregates
    from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
    from robustbench_ofa.evaluation.store import ResultsStore

    model, tasks, data = syn_model
    cfg = EvalConfig(attacks=["pwws"], tasks=["vqa"], n_samples=6, batch_size=6, beam=1, transfer=False,
                     sanity_samples=1, params=AttackParams.of(steps=1, text_queries=40))
    store = ResultsStore(tmp_path / "results.sqlite")
    store.bind(cfg.settings())
    assert cfg.settings()["params"]["text_protect"] is None
    Evaluator(cfg, store, lambda n: LoadedVariant(n, model, tasks["vqa"].tokenizer, 32),
              lambda t, n: data[t][:n], progress=False).run(["micro"])
    res = store.frame("results")
    attacked = res[(res.norm == "text") & (res.status == "attacked")]
    assert len(attacked) and attacked.rejected_successes.notna().all()
    tables = write_aggregates(store, tmp_path, {})
    csv = pd.read_csv(tmp_path / "text_attacks.csv")
    assert {"rejected_successes", "rejected_samples", "rejected_share"} <= set(csv.columns)
    assert int(csv.rejected_successes.sum()) == int(attacked.rejected_successes.sum()) > 0
    row = json.loads((tmp_path / "summary.json").read_text())["text_attacks"][0]
    fooled = int((attacked.adv_correct == 0).sum())
    rescued = int(((attacked.adv_correct == 1) & (attacked.rejected_successes > 0)).sum())
    assert row["rejected_share"] == pytest.approx(rescued / (rescued + fooled))
    assert tables["text_attacks"].rejected_samples.iloc[0] == int((attacked.rejected_successes > 0).sum())
    report = load_report(tmp_path, allow_incomplete=True, with_figures=False)
    table = next(t for t in report.result_tables if t.key == "text-attacks")
    assert [c.label for c in table.columns][-4:] == ["Rejected successes", "Rejected share", "No valid edit",
                                                     "Rejected by check"]
    assert table.rows[0][-4].text == str(int(attacked.rejected_successes.sum()))
    # nothing valid to try, and the candidates each check rejected: stored per sample, summed per attack
    assert attacked.valid_candidates.notna().all()
    no_valid = int(((attacked.adv_correct == 1) & (attacked.valid_candidates == 0)).sum())
    assert csv.no_valid_edit.iloc[0] == no_valid and table.rows[0][-2].text == str(no_valid)
    per_check: dict[str, int] = {}
    for cell in attacked.rejected_candidates:
        for name, n in json.loads(cell).items():
            per_check[name] = per_check.get(name, 0) + n
    assert per_check and all(csv[f"rejected_{name}"].iloc[0] == n for name, n in per_check.items())
    assert {"pos", "sense"} <= set(per_check) or per_check.get("oracle", 0) > 0, per_check
    first = next(iter(per_check))
    assert f"{first} {per_check[first]}" in table.rows[0][-1].text
    from robustbench_ofa.evaluation.outputs import format_summary

    assert f"rejected {first} {per_check[first]}" in format_summary(tables)
    # the report shows adversarial texts next to their originals
    assert report.text_examples and all(e.before and e.after for e in report.text_examples)


def test_old_databases_gain_the_column(tmp_path):
    import sqlite3

    from robustbench_ofa.evaluation.store import ResultsStore

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE results (variant TEXT, task TEXT, attack TEXT, norm TEXT, eps_label TEXT, eps REAL, "
               "uid TEXT, status TEXT, clean_pred TEXT, adv_pred TEXT, clean_correct INTEGER, adv_correct INTEGER, "
               "clean_score REAL, adv_score REAL, linf REAL, l2 REAL, grad_evals INTEGER, queries INTEGER, "
               "seconds REAL, first_grad REAL, words INTEGER, adv_text TEXT, words_changed INTEGER, n_words INTEGER, "
               "PRIMARY KEY (variant, task, attack, norm, eps_label, uid))")
    db.execute("INSERT INTO results (variant, task, attack, norm, eps_label, eps, uid, status, clean_correct, "
               "adv_correct, words, adv_text, words_changed, n_words, queries) VALUES ('v', 'vqa', 'pwws', 'text', "
               "'words=1', 1.0, 'u', 'attacked', 1, 0, 1, 'x', 1, 3, 5)")
    db.commit()
    db.close()
    res = ResultsStore(path).frame("results")
    assert "rejected_successes" in res and res.rejected_successes.isna().all()
    from robustbench_ofa.evaluation.aggregate import text_attack_table

    row = text_attack_table(res).iloc[0]
    assert row.successful == 1 and pd.isna(row.rejected_share)  # unknown for rows that predate the checks


def test_a_note_says_when_an_attack_had_nothing_valid_to_try():
    """The note fires where at least half the samples an attack did not fool had no valid candidate, and
    only there: an attack that tried something on most samples says nothing."""
    from robustbench_ofa.evaluation.outputs import no_valid_edit_note

    row = pd.Series(dict(task="vqa", variant="v", attack="pwws", eps_label="words=1", failed=48, no_valid_edit=43))
    assert no_valid_edit_note(row) == ("no valid edit within 1 word(s) for 43 of the 48 samples not fooled: their "
                                       "accuracy under attack is not evidence of robustness")
    assert not no_valid_edit_note(row.copy().replace({43: 23}))
    assert not no_valid_edit_note(pd.Series({**row.to_dict(), "no_valid_edit": float("nan")}))
    assert not no_valid_edit_note(pd.Series({**row.to_dict(), "failed": 0, "no_valid_edit": 0}))


def test_successful_texts_are_a_seeded_sample_shown_in_csv_summary_and_report():
    """Per (task, variant, attack, budget) at most 3 fooled samples, drawn with the seed whatever order the
    rows were stored in, each next to its original; the terminal summary prints 3 of them, the report all."""
    from reports.examples import success_examples
    from robustbench_ofa.evaluation.aggregate import text_successes
    from robustbench_ofa.evaluation.outputs import _success_lines

    rows = [dict(task="vqa", variant=v, attack=a, norm="text", eps_label="words=1", uid=f"u{i}",
                 status="attacked", adv_correct=int(i % 3 == 0), adv_text=f"what colour is thing {i}?",
                 clean_pred="red", adv_pred="blue") for v in ("a", "b") for a in ("pwws", "deepwordbug")
            for i in range(10)]
    rows.append({**rows[0], "norm": "linf", "adv_text": None, "attack": "pgd"})
    res = pd.DataFrame(rows)
    samples = pd.DataFrame(dict(task="vqa", uid=[f"u{i}" for i in range(10)],
                                text=[f"what color is thing {i}?" for i in range(10)]))
    won = text_successes(res, samples)
    assert len(won) == 4 * 3 and (won.groupby(["variant", "attack"]).size() == 3).all()
    fooled = {f"u{i}" for i in range(10) if i % 3}
    assert set(won.uid) <= fooled
    assert all(o == a.replace("colour", "color") for o, a in zip(won.original, won.adversarial))
    shuffled = text_successes(res.sample(frac=1.0, random_state=1), samples)
    def by_key(df):
        return df.sort_values(["variant", "attack", "uid"]).reset_index(drop=True)

    assert by_key(shuffled).equals(by_key(won))
    assert not text_successes(res, samples, seed=1).equals(won)  # another seed, another draw
    lines = _success_lines(won)
    assert len(lines) == 1 + 3 and "3 of 12 drawn" in lines[0] and len({line.split(":")[0] for line in lines[1:]}) == 3
    examples = success_examples(won)
    assert len(examples) == 12 and all(e.fooled for e in examples)
    assert [w for w, changed in examples[0].after if changed] == ["colour"]


# --- issue 32: part of speech and word sense, on hand-made data --------------------------------------

DATA = Path(__file__).parent / "data"


def test_pos_tagger_accuracy_on_hand_tagged_text():
    """TextBlob's Pattern tagger, as the pos check reads it (token i's coarse class in its sentence),
    against 31 hand-tagged texts (192 tokens; 187 right when written: "on" in "are the lights on?" and
    "left" in "on the left" among the misses). Lexicon and rules, no floats: any machine tags alike."""
    from attacks.text.validity import pos_tags

    right = total = 0
    for line in (DATA / "pos_tagged.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        gold = [t.rsplit("/", 1) for t in line.split()]
        got = pos_tags(" ".join(w for w, _ in gold))
        assert len(got) == len(gold)
        for (_, want), tag in zip(gold, got):
            right += (tag if tag in ("noun", "verb", "adj", "adv") else "other") == want
            total += 1
    assert total == 192 and right / total >= 0.95, (right, total)


def test_pos_check_rejects_another_part_of_speech_and_keeps_inflections():
    """The issue's PWWS successes that were another part of speech fail; a synonym of the same part of
    speech, an inflection of the same verb and an edit that is no substitution pass."""
    from attacks.text.validity import PosCheck

    pos = PosCheck()
    for original, candidate in [("does the image contain a circle?", "exercise the image contain a circle?"),
                                ("does the image contain a star?", "come the image contain a star?"),
                                ("does the image contain a square?", "can the image contain a square?"),
                                ("is a circle present?", "is a circulate present?"),
                                ("what shape is present?", "what forge is present?"),
                                ("is there a black shape?", "is there a nigrify shape?")]:
        assert not pos(original, candidate), candidate
    for original, candidate in [("is this a big kitchen?", "is this a large kitchen?"),
                                ("what is in the picture?", "what is in the image?"),
                                ("are the horses running?", "are the horses run?"),
                                ("does the image contain a square?", "do the image contain a square?"),
                                ("is the dog here?", "is the dog here?"), ("a red cup", "a red cup on it")]:
        assert pos(original, candidate), candidate


def test_antonyms_are_found_through_inflections(text_resources):
    """"smaller" -> "larger" is an antonym swap although "larger" is a WordNet lemma of its own (its base
    "large" is the antonym of "small"); a comparative of a synonym is not."""
    from attacks.text.validity import lexicon

    lex = lexicon(text_resources)
    assert lex.are_antonyms("smaller", "larger") and lex.are_antonyms("older", "younger")
    assert not lex.are_antonyms("bigger", "larger")


@pytest.fixture(scope="module")
def scored_pairs(text_resources):
    from attacks.text.calibration import read_pairs, score

    return score(read_pairs(DATA / "text_validity_pairs.tsv"), text_resources)


def test_sense_threshold_is_calibrated_on_the_hand_labelled_pairs(scored_pairs):
    """The shipped threshold is the one ``scripts/calibrate_text_validity.py`` picks, and with it the
    checks let at most 5 % of the changed pairs through on each half of the 274 hand-labelled pairs (when
    written: 0/101 and 5/106, with 17 of 67 same-meaning pairs rejected). The pairs the threshold decides
    sit at least 0.0016 from it, far beyond float noise between CPUs (about 1e-5)."""
    from attacks.text.calibration import MAX_CHANGED, calibrate, rates
    from attacks.text.validity import SENSE_MIN_COS

    assert len(scored_pairs) == 274 and sum(p.same for p in scored_pairs) == 67
    assert calibrate(scored_pairs) == SENSE_MIN_COS
    for half in ("calibration", "held-out"):
        assert rates(scored_pairs, SENSE_MIN_COS, half).changed_share <= MAX_CHANGED
    # what the checks catch: without the sense check half the changed pairs pass, with nothing all do
    assert rates(scored_pairs, -1.0).changed_share > 0.4
    assert all(p.kept(-1.0) for p in scored_pairs if not p.rejected_by)


def test_word_substitution_recipes_get_the_pos_and_sense_checks(text_resources):
    """PWWS and TextFooler-GloVe (and co-attack's text stage, which runs one of them) get the pos and sense
    checks and need the tagger and MiniLM; the character-level recipes keep their words and skip them."""
    from attacks import ATTACKS
    from attacks.text.validity import checks_for

    sample = Sample(uid="q", task="vqa", image=Image.new("RGB", (8, 8)), text="is there a cup?", answers=["yes"])
    for name in ("pwws", "textfooler-glove"):
        spec = ATTACKS.get(name)
        assert spec.substitutes_words and {"minilm", "tagger"} <= set(spec.needs)
    for name in ("deepwordbug", "pruthi", "badchars"):
        assert not ATTACKS.get(name).substitutes_words
    names = [c.name for c in checks_for(sample, None, text_resources, frozenset(), True)]
    assert names == ["antonym", "cohyponym", "pos", "sense"]
    assert [c.name for c in checks_for(sample, None, text_resources)] == ["antonym", "cohyponym"]


def test_the_gate_filters_a_search_step_in_one_pass_as_it_would_one_by_one(text_resources):
    """The gate's batched filtering (one encoder pass for the sense check) keeps and rejects exactly what
    checking each candidate alone does, and attributes each rejection to the same check."""
    from attacks.text.resources import import_textattack

    import_textattack(text_resources)
    from textattack.shared import AttackedText

    from attacks.text.components import ValidityGate
    from attacks.text.validity import checks_for

    sample = Sample(uid="q", task="vqa", image=Image.new("RGB", (8, 8)), text="is the small dog sleeping?",
                    answers=["yes"])
    candidates = ["is the large dog sleeping?", "is the small wolf sleeping?", "is the little dog sleeping?",
                  "is the small dog kip?", "is the small frump sleeping?", "is the small dog asleep?"]
    one = ValidityGate(checks_for(sample, None, text_resources, frozenset(), True))
    alone = {c: one.reason(sample.text, c) for c in candidates}
    many = ValidityGate(checks_for(sample, None, text_resources, frozenset(), True))
    texts = [AttackedText(c) for c in candidates]
    kept = [t.text for t in many._check_constraint_many(texts, AttackedText(sample.text))]
    assert kept == [c for c in candidates if alone[c] is None]
    assert many.rejected == {c: why for c, why in alone.items() if why is not None}
    assert alone["is the large dog sleeping?"] == "antonym" and alone["is the small wolf sleeping?"] == "cohyponym"
    assert alone["is the small frump sleeping?"] == "sense" and alone["is the little dog sleeping?"] is None
    assert set(alone.values()) == {"antonym", "cohyponym", "pos", "sense", None}, alone
