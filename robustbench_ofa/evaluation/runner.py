"""The evaluation loop: variants x tasks x (norm, eps) x attacks, resumable, every sample recorded.

Order of work per variant and task: clean predictions; a determinism check; then for each norm its eps
ladder in ascending order and, at each eps, the attacks in the order given. With ``cascade`` a sample
that an earlier attack (or any attack at a smaller eps) already fooled is not attacked again: its row
records the adversarial example that fooled it (valid at every larger eps), so robust accuracy is the
per-sample worst case over all attacks, AutoAttack's rule. Every batch of rows is one transaction.

Under torchrun (``dist``) every loop over batches runs in rounds, batch ``k`` on rank ``k mod world``, and
each round's rows are gathered onto every rank's replica of the store (``evaluation.distributed``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from attacks import ATTACKS, AttackParams, Threat, run_attack
from attacks.objective import stochastic_modules
from attacks.views import TaskView
from robustbench_ofa.data.types import Sample
from robustbench_ofa.distributed import SINGLE, Dist
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.config import TWIN_TRANSFER, EvalConfig, own_white_box
from robustbench_ofa.evaluation.precision import attack_passes, compile_model, judging
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.evaluation.twins import twin_recipe
from robustbench_ofa.seeds import sample_seed
from robustbench_ofa.stats import wilson_interval
from robustbench_ofa.tasks import Task, TaskBatch, get_task, task_class


@dataclass
class LoadedVariant:
    """A model ready to evaluate, with what the evaluator needs to know about it."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    info: dict = field(default_factory=dict)


VariantLoader = Callable[[str], LoadedVariant]

#: Under torchrun, rounds of batches (one batch per rank each) between two gathers of rows onto every
#: rank's store (``Evaluator._buffered_rounds``). Measured on the 2-process benchmark (two runs each): a
#: gather every round spent 0.8-0.9 % of the evaluation gathering and 13.5-14 % waiting for the slower
#: rank; every 4 rounds, 0.2-0.3 % and 12.4-13.6 % (the rest of the waiting is each unit's last batch).
GATHER_ROUNDS = 4
#: The white-box attack of the transfer matrix (the large-eps check's are ``EvalConfig.sanity_attacks``).
TRANSFER_ATTACK = "pgd"
DataSource = Callable[[str, int], list[Sample]]


def _sample_rows(samples: Sequence[Sample]):
    """What reports show of each sample: its text, reference (box in original pixels), image size, and the
    label (closed-answer tasks) and what decides it (``meta["decided_by"]``, where the data says) that the
    breakdown tables group by."""
    for s in samples:
        cls = task_class(s.task)
        ref = json.dumps([round(float(v), 2) for v in s.box]) if s.box is not None else cls.reference_text(s)
        label = cls.reference_text(s) if cls.closed_answers else None
        yield (s.task, s.uid, s.text, ref, s.image.width, s.image.height, label, s.meta.get("decided_by"))


def chunk_order(samples: Sequence[Sample], uids: dict) -> list[Sample]:
    """The samples whose uid is in ``uids``, in their original order (gathered results come in rank order)."""
    return [s for s in samples if s.uid in uids]


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    arr = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class Evaluator:
    """Runs an evaluation into a ``ResultsStore``; rerunning the same command resumes it."""

    def __init__(self, config: EvalConfig, store: ResultsStore, load: VariantLoader, data: DataSource,
                 progress: bool = True, dist: Dist = SINGLE):
        self.cfg = config
        self.store = store
        self.load = load
        self.data = data
        self.dist = dist
        self.progress = progress and dist.is_main

    # -- public ------------------------------------------------------------------------------------
    def run(self, variant_names: Sequence[str]) -> None:
        """Every variant x task: clean, checks, the image attacks per norm and eps (``cfg.image_attacks``:
        with ``--protocol strong`` the adaptive set joins the cascade, so the worst case includes it), text
        attacks, the large-eps check; then the transfer checks."""
        with judging(self.cfg.device, self.cfg.compile):
            self._run(variant_names)

    def _run(self, variant_names: Sequence[str]) -> None:
        self._cards: dict[str, dict] = {}
        self._names = list(variant_names)
        self._source_cache: dict[str, LoadedVariant] = {}
        if TWIN_TRANSFER in self.cfg.image_attacks(Threat.LINF):
            self._read_cards(variant_names)
        for name in variant_names:
            lv = self._ready(self.load(name))
            self._cards[name] = dict(lv.info or {})
            for task_name in self.cfg.tasks:
                task, samples = self._task_and_samples(lv, task_name)
                self.store.add_samples(_sample_rows(samples))
                self._clean(lv, task, samples)
                self._determinism(lv, task, samples)
                self._stochastic_check(lv, task)  # also when eot-pgd is named without --protocol strong
                for norm in Threat.image():
                    names = [a for a in self.cfg.image_attacks(norm)
                             if (a in self.cfg.attacks or ATTACKS.get(a).refusal(task) is None)
                             and (not ATTACKS.get(a).needs_sources or self._sources(name))]
                    ladder = self.cfg.ladder(norm) if names else []
                    for i, (label, eps) in enumerate(ladder):
                        smaller = [e for _, e in ladder[:i]]
                        for j, attack in enumerate(names):
                            self._attack_unit(lv, task, samples, attack, norm, label, eps, [(norm, smaller)],
                                              names[:j])
                self._text_units(lv, task, samples)
                self._sanity(lv, task, samples)
            del lv
            self._source_cache.clear()
        if (self.cfg.transfer or self.cfg.protocol == "strong") and len(variant_names) > 1:
            self._transfer(list(variant_names))

    def _read_cards(self, names: Sequence[str]) -> None:
        """Every variant's card before any work, for choosing twins (each model loaded once here, on every
        rank in the same order). A ``--attack twin-transfer`` that no variant can run is refused."""
        for name in names:
            self._cards[name] = dict(self.load(name).info or {})
        if TWIN_TRANSFER in self.cfg.attacks and not any(self._sources(n) for n in names):
            raise RobustOFAError(f"--attack {TWIN_TRANSFER}: no variant of the run has a twin to craft images on "
                                 "(a robust-trained variant and its standard twin, or a parameter-efficient "
                                 "variant and a finetuned one, of the same base)")

    def _sources(self, name: str) -> list[str]:
        """The twins that ``name``'s transferred images are crafted on, among the run's variants (by their
        cards): a robust-trained variant's standard twin (same base, method, hyper-parameters and
        ``twin_recipe``: tasks, data and training settings, no adversarial training), then, for a
        parameter-efficient variant, the finetuned (not parameter-efficient, not robust-trained) variants
        of the same base tuned on at least its tasks. The second kind is only a surrogate, so its data and
        settings need not match: any model of the task gives a valid black-box attack, and what matters
        is that its gradients are not masked like the variant's may be."""
        from robustbench_ofa.tuning import METHODS

        cards = self._cards
        me = cards.get(name, {})
        base = me.get("base")
        if not base:
            return []

        def efficient(card: dict) -> bool | None:
            method = card.get("method")
            return METHODS.get(method).parameter_efficient if method in METHODS else None

        others = [n for n in self._names if n != name and cards.get(n, {}).get("base") == base]
        out = []
        if me.get("adversarial"):
            recipe = twin_recipe(me)
            out += [n for n in others if not cards[n].get("adversarial") and cards[n].get("method") == me.get("method")
                    and cards[n].get("hparams") == me.get("hparams") and twin_recipe(cards[n]) == recipe]
        if efficient(me):
            tasks = set(me.get("tasks") or [])
            out += [n for n in others if efficient(cards[n]) is False and not cards[n].get("adversarial")
                    and tasks <= set(cards[n].get("tasks") or []) and n not in out]
        return out

    def _source_views(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> list[tuple[LoadedVariant, Task]]:
        """The loaded twins of ``lv`` (cached until the variant is done) and their tasks (built per unit,
        like the twin's own evaluation would). Called by every rank at the same point (loading compares
        weights)."""
        out = []
        for src in self._sources(lv.name):
            if src not in self._source_cache:
                slv = self._ready(self.load(src))
                if slv.image_size != lv.image_size:
                    raise RobustOFAError(f"{TWIN_TRANSFER}: twin {src!r} reads {slv.image_size}px images, "
                                         f"{lv.name!r} {lv.image_size}px: not the same base")
                self._source_cache[src] = slv
            slv = self._source_cache[src]
            out.append((slv, self._make_task(slv, task.name, samples)))
        return out

    def _stochastic_check(self, lv: LoadedVariant, task: Task) -> None:
        """Record what EOT attacks average over: the tuning method's dropout modules (none: they equal
        their deterministic versions, e.g. EOT-PGD is PGD)."""
        if self.store.has_check(lv.name, task.name, "stochastic_modules"):
            return
        found = stochastic_modules(lv.model)
        detail = (f"EOT averages over {len(found)} dropout module(s) of the tuning method: "
                  + ", ".join(f"{n} (p={m.p:g})" for n, m in found[:4]) + (" ..." if len(found) > 4 else "")
                  if found else "no stochastic modules in the tuning method's path: EOT attacks equal their "
                                "deterministic versions (EOT-PGD is PGD)")
        self.store.add_check(lv.name, task.name, "stochastic_modules", float(len(found)), detail)

    def check_compatible(self, tasks: Sequence[Task]) -> None:
        """Refuse impossible attack/task pairs before any work."""
        for task in tasks:
            for a in self.cfg.attacks:
                ATTACKS.get(a).check_task(task)

    # -- pieces ------------------------------------------------------------------------------------
    def _task_and_samples(self, lv: LoadedVariant, task_name: str) -> tuple[Task, list[Sample]]:
        samples = self.data(task_name, self.cfg.n_samples)
        task = self._make_task(lv, task_name, samples)
        if task_class(task_name).open_answer_set:
            self._answer_checks(lv, task, samples, self._answer_set(lv, task_name)[1])
        return task, samples

    def _make_task(self, lv: LoadedVariant, task_name: str, samples: list[Sample]) -> Task:
        answers, _ = self._answer_set(lv, task_name)
        task = get_task(task_name, lv.tokenizer, lv.image_size, beam=self.cfg.beam,
                        **({"answers": answers} if answers is not None else {}))
        task.prepare(samples)
        if task_class(task_name).open_answer_set:
            task.stand_in_for_unanswerable = True  # counted wrong and reported, never a crash
        return task

    def _answer_set(self, lv: LoadedVariant, task_name: str) -> tuple[list[str] | None, str]:
        """``--answers``, else the set the variant was tuned with (its card), else the task's default."""
        if not task_class(task_name).open_answer_set:
            return None, ""
        from robustbench_ofa.tasks.answers import load_answers, read_variant_answers

        if self.cfg.answers is not None:
            return load_answers(self.cfg.answers), f"--answers {self.cfg.answers}"
        stored = read_variant_answers(lv.info or {}, task_name)
        if stored is not None:
            return stored, "the set the variant was tuned with"
        return None, "the task's default set"

    def _answer_checks(self, lv: LoadedVariant, task: Task, samples: list[Sample], source: str) -> None:
        """Samples whose answers are all outside the answer set can never be answered: they count as wrong
        (never dropped, never a crash), and how many there are is stored beside the accuracy."""
        if self.store.has_check(lv.name, task.name, "unanswerable"):
            return
        out = [s.uid for s in samples if not task.answerable(s)]
        self.store.add_check(lv.name, task.name, "answer_set_size", float(task.num_classes), source)
        detail = (f"{len(out)} of {len(samples)} samples have no answer in the answer set ({task.num_classes} "
                  f"answers, {source}): counted wrong" + (f"; e.g. {', '.join(out[:3])}" if out else ""))
        self.store.add_check(lv.name, task.name, "unanswerable", float(len(out)), detail)

    def _batches(self, items: list, size: int | None = None):
        size = size or self.cfg.batch_size
        for i in range(0, len(items), size):
            yield items[i:i + size]

    def _rounds(self, items: list):
        """(global batch index, this rank's batch ([] if none), samples in the whole round) per round.

        The batches are those of a single process, so a batch holds the same samples whatever the world
        size; every rank gets every round, so all make the same collective calls."""
        batches = list(self._batches(items))
        world = self.dist.world
        for start in range(0, len(batches), world):
            k = start + self.dist.rank
            yield k, (batches[k] if k < len(batches) else []), sum(map(len, batches[start:start + world]))

    def _precision(self):
        """The attacks' arithmetic (``--precision``) and compiled passes (``--compile``); predictions are
        judged outside it, in fp32 and eagerly."""
        return attack_passes(self.cfg.precision, self.cfg.device, self.cfg.compile)

    def _ready(self, lv: LoadedVariant) -> LoadedVariant:
        """The variant on the run's device, in eval mode, compiled with ``--compile``."""
        lv.model.to(self.cfg.device).eval()
        if self.cfg.compile:
            compile_model(lv.model)
        return lv

    def _buffered_rounds(self, items: list):
        """``_rounds`` plus ``flush``: whether this round's work (queued by the caller in ``_pending`` as
        (global batch index, payload)) is gathered and stored now. One process stores every batch as it
        ends; under torchrun the ranks gather every ``GATHER_ROUNDS`` rounds and at the end, so the ranks
        wait for each other once per few rounds, not once per batch (what a rank dies with: at most
        ``GATHER_ROUNDS`` of its batches, recomputed on resume)."""
        self._pending: list[tuple[int, Any]] = []
        rounds = list(self._rounds(items))
        every = GATHER_ROUNDS if self.dist.active else 1
        for i, (k, chunk, n_round) in enumerate(rounds):
            yield k, chunk, n_round, (i + 1) % every == 0 or i + 1 == len(rounds)

    def _flush(self) -> list[tuple[int, Any]]:
        """Every rank's queued (batch index, payload), in the single-process order of batches."""
        gathered = sorted((x for part in self.dist.all_gather(self._pending) for x in part), key=lambda x: x[0])
        self._pending = []
        return gathered

    def _gathered(self, items: list) -> list:
        """Every rank's items of this round, in rank order (the items alone in one process)."""
        return [x for part in self.dist.all_gather(items) for x in part]

    def _clean(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        done = self.store.clean_rows(lv.name, task.name)
        if all(s.uid in done for s in samples):
            return
        bar = tqdm(total=len(samples), desc=f"{lv.name} {task.name} clean", disable=not self.progress,
                   leave=False)
        for k, chunk, n_round, flush in self._buffered_rounds(samples):
            todo = [s for s in chunk if s.uid not in done]
            if todo:
                t0 = time.perf_counter()
                batch = task.collate(todo).to(self.cfg.device)
                preds = task.predict(lv.model, batch)
                dt = (time.perf_counter() - t0) / len(todo)
                self._pending.append((k, [(lv.name, task.name, s.uid, task.describe(p.value), p.score,
                                           int(p.correct), dt) for s, p in zip(todo, preds)]))
            if flush:
                self.store.add_clean([r for _, rows in self._flush() for r in rows])
            bar.update(n_round)
        bar.close()

    def _determinism(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        """Checks of the forward pass on the first (up to 4) samples, stored for the validity flags.

        ``nondeterminism``: max |difference| of two identical loss passes (over samples where both are
        finite). ``nonfinite_outputs``: the share of those samples whose loss or attack-view logits hold a
        NaN or inf (e.g. a checkpoint with NaN weights: every prediction is then an arbitrary argmax and
        every number 0 or meaningless). It is flagged, not fatal: a run's other variants stay valid, and
        the flag stands next to this one's numbers in the summary and the report. ``chance_level``
        (closed-answer tasks): 1 / number of answers, what the ``clean-at-chance`` flag compares with.
        """
        names = ("nondeterminism", "nonfinite_outputs") + (("chance_level",) if task.closed_answers else ())
        if all(self.store.has_check(lv.name, task.name, n) for n in names):
            return
        chosen = samples[: min(4, len(samples))]
        batch = task.collate(chosen).to(self.cfg.device)
        with torch.no_grad():
            a = task.loss(lv.model, batch)
            b = task.loss(lv.model, batch)
            logits, _ = task.attack_logits(lv.model, batch.input_ids, batch.images, batch.targets, chosen)
        finite = a.isfinite() & b.isfinite()
        diff = (a - b).abs()[finite]
        self.store.add_check(lv.name, task.name, "nondeterminism", float(diff.max()) if len(diff) else 0.0,
                             "max |difference| of two identical forward passes (dropout left on?)")
        bad = ~(finite & logits.isfinite().all(-1))
        self.store.add_check(lv.name, task.name, "nonfinite_outputs", float(bad.float().mean()),
                             f"{int(bad.sum())} of {len(chosen)} checked samples give NaN/inf losses or logits")
        if task.closed_answers:
            self.store.add_check(lv.name, task.name, "chance_level", 1.0 / task.num_classes,
                                 f"1/{task.num_classes} answers")

    def _adv_correct(self, task: Task, pred, clean_score: float) -> bool:
        return task.adversarial_correct(pred, clean_score, self.cfg.caption_drop)

    def _text_units(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        """Text attacks (budget: words changed), then joint image+text attacks, after the image attacks.

        A joint threat (image within eps and <= k words) contains every image-only threat at eps' <= eps and
        every text-only one at k' <= k, so with ``cascade`` a joint attack inherits the samples they fooled.
        """
        words = self.cfg.text.words
        text = [a for a in self.cfg.attacks if ATTACKS.get(a).threat is Threat.TEXT]
        for j, attack in enumerate(text):
            self._attack_unit(lv, task, samples, attack, Threat.TEXT, f"words={words}", float(words), [], text[:j])
        joint = [a for a in self.cfg.attacks if ATTACKS.get(a).threat is Threat.LINF_TEXT]
        if joint:
            label, eps = self.cfg.co_eps()
            inherit = [(Threat.LINF, [e for _, e in self.cfg.eps if e <= eps + 1e-12]), (Threat.TEXT, [float(words)])]
            for j, attack in enumerate(joint):
                self._attack_unit(lv, task, samples, attack, Threat.LINF_TEXT, f"{label}+words={words}", eps,
                                  inherit, joint[:j])

    def _attack_unit(self, lv, task, samples, attack, norm, label, eps, inherit, earlier) -> None:
        """``inherit``: (norm, eps values) of contained threats whose fooled samples this unit inherits."""
        store, cfg = self.store, self.cfg
        done = store.done_uids(lv.name, task.name, attack, norm, label)
        if len(done) == len(samples):
            return
        clean = store.clean_rows(lv.name, task.name)
        inherited = {}
        # Under --protocol strong, on an image ladder, the run's own white-box attacks inherit only what they
        # fooled (their cascade predecessors are own white-box attacks too: ``image_attacks``), so their rows
        # alone stay the worst case before the protocol's additions and the black-box attacks
        # (``reports.frontier`` compares the two). Every other attack, and a joint threat, inherits
        # every fooled sample (the worst case).
        white = own_white_box(cfg.attacks)
        own = white if cfg.protocol == "strong" and attack in white and norm in Threat.image() else None
        if cfg.cascade:
            for inorm, values in inherit:
                for uid, row in store.fooled_uids(lv.name, task.name, inorm, values, own).items():
                    inherited.setdefault(uid, row)
        words = cfg.text.words if ATTACKS.get(attack).modality != "image" else None
        cascaded = {}
        if cfg.cascade and earlier:
            now = store.fooled_uids(lv.name, task.name, norm, [eps])
            cascaded = {u: r for u, r in now.items() if r["attack"] in earlier and (own is None or r["attack"] in own)}
        direct, to_attack = [], []
        for s in samples:
            pred, score, correct = clean[s.uid]
            base = dict(variant=lv.name, task=task.name, attack=attack, norm=norm, eps_label=label, eps=eps,
                        uid=s.uid, clean_pred=pred, clean_correct=int(correct), clean_score=score,
                        grad_evals=0, queries=0, seconds=0.0, first_grad=None, words=words)
            if not correct:
                direct.append({**base, "status": "clean-wrong", "adv_pred": pred, "adv_correct": 0,
                               "adv_score": score, "linf": 0.0, "l2": 0.0})
            elif s.uid in inherited or s.uid in cascaded:
                src = cascaded.get(s.uid) or inherited[s.uid]
                status = "cascade" if s.uid in cascaded else "inherited"
                direct.append({**base, "status": status, "adv_pred": src["adv_pred"], "adv_correct": 0,
                               "adv_score": src["adv_score"], "linf": src["linf"], "l2": src["l2"],
                               "adv_text": src.get("adv_text"), "words_changed": src.get("words_changed"),
                               "n_words": src.get("n_words")})
            else:
                to_attack.append(s)
        store.add_results([r for r in direct if r["uid"] not in done])
        # Examples: the first samples this unit attacks (not the task's first samples: those may be clean-wrong
        # or already fooled at a smaller budget, and a unit would then keep no example to look at). The list
        # depends only on the store's completed units, so it is the same on every rank and on resume.
        example_uids = {s.uid for s in to_attack[: cfg.n_examples]}
        pending = any(s.uid not in done for s in to_attack)  # on resume, twins are loaded only if needed
        sources = self._source_views(lv, task, samples) if ATTACKS.get(attack).needs_sources and pending else []
        bar = tqdm(total=len(to_attack), desc=f"{lv.name} {task.name} {attack} {label}", leave=False,
                   disable=not self.progress or not to_attack)
        for k, chunk, n_round, flush in self._buffered_rounds(to_attack):
            if chunk and not all(s.uid in done for s in chunk):
                self._pending.append((k, self._attack_batch(lv, task, chunk, attack, norm, label, eps, clean,
                                                            example_uids, sources)))
            if flush:
                done_batches = self._flush()
                store.add_results([r for _, (rows, _) in done_batches for r in rows],
                                  [e for _, (_, ex) in done_batches for e in ex])
            bar.update(n_round)
        bar.close()

    def _attack_batch(self, lv, task, chunk, attack, norm, label, eps, clean, example_uids, sources=()):
        """``sources``: (twin, its task) pairs an attack that ``needs_sources`` crafts its images on."""
        spec = ATTACKS.get(attack)
        if spec.modality != "image":
            return self._text_batch(lv, task, chunk, attack, norm, label, eps, clean, example_uids)
        cfg = self.cfg
        batch = task.collate(chunk).to(cfg.device)
        seeds = [sample_seed(cfg.seed, lv.name, task.name, attack, norm, label, s.uid) for s in chunk]
        view = TaskView(lv.model, task, batch)
        if spec.needs_sources:
            view.sources = [TaskView(slv.model, stask, stask.collate(chunk).to(cfg.device)) for slv, stask in sources]
        t0 = time.perf_counter()
        with self._precision():
            res = run_attack(attack, view, batch.images, eps, cfg.params, seeds)
        adv = res.adv
        delta = (adv - batch.images).flatten(1)
        l2 = delta.norm(p=2, dim=1)
        if not spec.bounded:  # an unbounded attack (C&W): a perturbation outside the L2 ball does not count
            outside = l2 > eps + 1e-6
            adv = torch.where(outside[:, None, None, None], batch.images, adv)
            delta = (adv - batch.images).flatten(1)
            l2 = delta.norm(p=2, dim=1)
        preds = task.predict(lv.model, batch, images=adv)
        per = (time.perf_counter() - t0) / len(chunk)
        rows, examples = [], []
        for i, (s, p) in enumerate(zip(chunk, preds)):
            cpred, cscore, _ = clean[s.uid]
            ok = self._adv_correct(task, p, cscore)
            fg = float(res.first_grad[i])
            rows.append(dict(variant=lv.name, task=task.name, attack=attack, norm=norm, eps_label=label, eps=eps,
                             uid=s.uid, status="attacked", clean_pred=cpred, adv_pred=task.describe(p.value),
                             clean_correct=1, adv_correct=int(ok), clean_score=cscore, adv_score=p.score,
                             linf=float(delta[i].abs().max()), l2=float(l2[i]),
                             grad_evals=int(view.counters.grad[i]), queries=int(view.counters.queries[i]),
                             seconds=per, first_grad=None if fg != fg else fg))
            if s.uid in example_uids:
                examples.append((lv.name, task.name, "clean", "", s.uid, "image", _png(batch.images[i]), cpred))
                examples.append((lv.name, task.name, attack, label, s.uid, "adv", _png(adv[i]), task.describe(p.value)))
        return rows, examples

    def _text_batch(self, lv, task, chunk, attack, norm, label, eps, clean, example_uids):
        """A text attack (or co-attack) on a batch; judged, like image attacks, by the task's own prediction."""
        from attacks.text.engine import run_text_attack
        from attacks.text.queries import source_ids

        cfg, p = self.cfg, self.cfg.params
        batch = task.collate(chunk).to(cfg.device)
        seeds = [sample_seed(cfg.seed, lv.name, task.name, attack, norm, label, s.uid) for s in chunk]
        budget = cfg.text.budget()
        scores = [clean[s.uid][1] for s in chunk]
        t0 = time.perf_counter()
        grad_evals = torch.zeros(len(chunk), dtype=torch.long)
        first_grad = torch.full((len(chunk),), float("nan"))
        if norm is Threat.TEXT:
            with self._precision():
                outcomes = run_text_attack(attack, lv.model, task, chunk, batch.images, budget, seeds, scores,
                                           cfg.caption_drop)
            ids = source_ids(task, chunk, [o.adversarial for o in outcomes]).to(cfg.device)
            adv = batch.images
        else:  # a joint attack: its runner does both stages
            with self._precision():
                joint = ATTACKS.get(attack).runner(lv.model, task, batch, eps, p, seeds, scores, cfg.caption_drop)
            outcomes, ids, adv = joint.texts, joint.input_ids, joint.adv_images
            grad_evals, first_grad = joint.grad_evals, joint.first_grad
        preds = task.predict(lv.model, TaskBatch(chunk, ids, batch.images, batch.targets), images=adv)
        per = (time.perf_counter() - t0) / len(chunk)
        delta = (adv - batch.images).flatten(1)
        rows, examples = [], []
        for i, (s, p_, o) in enumerate(zip(chunk, preds, outcomes)):
            cpred, cscore, _ = clean[s.uid]
            fg = float(first_grad[i])
            rows.append(dict(variant=lv.name, task=task.name, attack=attack, norm=norm, eps_label=label, eps=eps,
                             uid=s.uid, status="attacked", clean_pred=cpred, adv_pred=task.describe(p_.value),
                             clean_correct=1, adv_correct=int(self._adv_correct(task, p_, cscore)), clean_score=cscore,
                             adv_score=p_.score, linf=float(delta[i].abs().max()), l2=float(delta[i].norm(p=2)),
                             grad_evals=int(grad_evals[i]), queries=o.queries, seconds=per,
                             first_grad=None if fg != fg else fg, words=budget.words, adv_text=o.adversarial,
                             words_changed=o.words_changed, n_words=o.n_words,
                             rejected_successes=o.rejected_successes, valid_candidates=o.valid_candidates,
                             rejected_candidates=json.dumps(o.rejected_candidates, sort_keys=True)))
            if s.uid in example_uids:
                examples.append((lv.name, task.name, attack, label, s.uid, "text", None, o.adversarial))
                if norm is not Threat.TEXT:
                    examples.append((lv.name, task.name, "clean", "", s.uid, "image", _png(batch.images[i]), cpred))
                    examples.append((lv.name, task.name, attack, label, s.uid, "adv", _png(adv[i]),
                                     task.describe(p_.value)))
        return rows, examples

    def _sanity(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        """A strong attack at a very large L-inf eps must drive accuracy near 0; if not, gradients are
        likely masked (or the text alone decides the answers).

        Per sample (up to ``sanity_samples`` clean-correct ones), the worst case over the run's own image
        attacks at every budget whose ball lies inside the L-inf ball of ``sanity_eps`` (an L-inf eps or
        an L2 radius <= it: read from the store, free) and then each of ``sanity_attacks`` at
        ``sanity_eps`` (``sanity_steps`` x ``sanity_restarts``, early stopping), each only on the samples
        still robust. A sample whose input gradient is exactly 0 at an attack's start is left out of the
        later attacks (masked: no gradient attack moves it; it stays robust, and is counted in the detail),
        so a masked model costs a few gradient evaluations per sample, not hundreds. Stored: ``large_eps_n``
        (samples) and ``large_eps_robust_acc`` (share robust), whose Wilson interval the
        ``large-eps-not-broken`` flag reads (``aggregate``).
        """
        if self.store.has_check(lv.name, task.name, "large_eps_robust_acc"):
            return
        cfg = self.cfg
        clean = self.store.clean_rows(lv.name, task.name)
        chosen = [s for s in samples if clean[s.uid][2]][: cfg.sanity_samples]
        if not chosen:
            return
        eps = cfg.sanity_eps
        fooled: set[str] = set()
        for norm in Threat.image():
            inside = [e for _, e in cfg.ladder(norm) if e <= eps + 1e-12]
            fooled |= set(self.store.fooled_uids(lv.name, task.name, norm, inside))
        robust = [s for s in chosen if s.uid not in fooled]
        stages = [f"the run's attacks {len(chosen) - len(robust)}"]
        params = AttackParams(steps=cfg.sanity_steps, restarts=cfg.sanity_restarts, early_stop=True)
        stuck: list[Sample] = []
        for attack in cfg.sanity_attacks:
            spec = ATTACKS.get(attack)
            if spec.refusal(task) is not None:
                continue
            still, before = [], len(stuck)
            for _, chunk, _ in self._rounds(robust):
                kept = []  # (uid, input gradient exactly 0 at the start) of samples the attack did not fool
                if chunk:
                    batch = task.collate(chunk).to(cfg.device)
                    seeds = [sample_seed(cfg.seed, "sanity", attack, s.uid) for s in chunk]
                    with self._precision():
                        res = run_attack(attack, TaskView(lv.model, task, batch), batch.images, eps, params, seeds)
                    preds = task.predict(lv.model, batch, images=res.adv)
                    kept = [(s.uid, g == 0) for s, p, g in zip(chunk, preds, res.first_grad.tolist())
                            if self._adv_correct(task, p, clean[s.uid][1])]
                kept_all = dict(self._gathered(kept))
                for s in chunk_order(robust, kept_all):
                    (stuck if kept_all[s.uid] else still).append(s)
            broken = len(robust) - len(still) - (len(stuck) - before)
            stages.append(f"{spec.display}-{params.steps}x{params.restarts} {broken}")
            robust = still
        robust += stuck
        k, n = len(robust), len(chosen)
        lo, hi = wilson_interval(k, n)
        self.store.add_check(lv.name, task.name, "large_eps_n", float(n), "clean-correct samples of the large-eps check")
        self.store.add_check(lv.name, task.name, "large_eps_robust_acc", k / n,
                             f"{k}/{n} robust, 95% CI [{lo:.0%}, {hi:.0%}], at L-inf eps {eps:g}; fooled by "
                             + ", then ".join(stages) + (f"; {len(stuck)} with an input gradient of exactly 0"
                                                         if stuck else ""))

    def _transfer(self, names: list[str]) -> None:
        """Adversarial images crafted on a source variant (PGD, no early stop, the first ``transfer_samples``
        samples), scored on target variants.

        The matrix (unless ``--no-transfer``): every variant as source and target, at the middle L-inf eps.
        ``--protocol strong`` adds, for each variant, its twins (``_sources``) as sources at every L-inf
        eps; the ``transfer-beats-white-box`` flag compares what transferred images fool with the target's
        own white-box results at the same eps (the twin-transfer attack of the cascade puts the same kind of
        images into the worst case, on every sample).
        """
        units: dict[tuple[str, str], tuple[float, list[str]]] = {}  # (source, eps label) -> (eps, targets)
        if self.cfg.transfer:
            label, eps = self.cfg.eps[len(self.cfg.eps) // 2]
            units.update({(src, label): (eps, list(names)) for src in names})
        if self.cfg.protocol == "strong":
            for tgt in names:
                for twin in self._sources(tgt):
                    for label, eps in self.cfg.eps:
                        old = units.get((twin, label), (eps, []))[1]
                        units[(twin, label)] = (eps, old + ([tgt] if tgt not in old else []))
        params = AttackParams(steps=self.cfg.params.steps, alpha=self.cfg.params.alpha, early_stop=False)
        crafted: dict[tuple[str, str, str], torch.Tensor] = {}
        for src in names:
            lv = None
            for task_name in self.cfg.tasks:
                mine = [(label, eps) for (s, label), (eps, tg) in units.items()
                        if s == src and not self._transfer_done(src, tg, task_name, label)]
                if not mine:
                    continue
                lv = lv or self._ready(self.load(src))
                task, samples = self._task_and_samples(lv, task_name)
                chosen = samples[: self.cfg.transfer_samples]
                for label, eps in mine:
                    advs = {}  # global batch index -> adversarial images (this rank's batches only)
                    for k, chunk, _ in self._rounds(chosen):
                        if not chunk:
                            continue
                        batch = task.collate(chunk).to(self.cfg.device)
                        seeds = [sample_seed(self.cfg.seed, "transfer", src, s.uid) for s in chunk]
                        with self._precision():
                            advs[k] = run_attack(TRANSFER_ATTACK, TaskView(lv.model, task, batch), batch.images,
                                                 eps, params, seeds).adv
                    crafted[(src, task_name, label)] = advs
        for tgt in names:
            lv = None
            for task_name in self.cfg.tasks:
                pairs = [(src, label) for (src, label), (_, tg) in units.items()
                         if tgt in tg and (src, task_name, label) in crafted]
                if not pairs:
                    continue
                lv = lv or self._ready(self.load(tgt))
                task, samples = self._task_and_samples(lv, task_name)
                chosen = samples[: self.cfg.transfer_samples]
                clean = self.store.clean_rows(tgt, task_name)
                for src, label in pairs:
                    rows = []
                    adv_all = crafted[(src, task_name, label)]
                    for k, chunk, _ in self._rounds(chosen):
                        if not chunk:
                            continue
                        batch = task.collate(chunk).to(self.cfg.device)
                        preds = task.predict(lv.model, batch, images=adv_all[k])
                        for s, p in zip(chunk, preds):
                            c = clean.get(s.uid)
                            rows.append((src, tgt, task_name, TRANSFER_ATTACK, label, s.uid, int(c[2]) if c else 0,
                                         int(self._adv_correct(task, p, c[1] if c else 0.0))))
                    self.store.add_transfer(self._gathered(rows))

    def _transfer_done(self, src: str, targets: list[str], task_name: str, label: str) -> bool:
        marks = ",".join("?" * len(targets))
        n = self.store.db.execute(f"SELECT COUNT(*) FROM transfer WHERE source=? AND task=? AND eps_label=? "
                                  f"AND target IN ({marks})", (src, task_name, label, *targets)).fetchone()[0]
        return n >= len(targets) * min(self.cfg.transfer_samples, self.cfg.n_samples)
