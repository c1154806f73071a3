"""The evaluation loop: variants x tasks x (norm, eps) x attacks, resumable, every sample recorded.

Order of work per variant and task: clean predictions; a determinism check; then for each norm its eps
ladder in ascending order and, at each eps, the attacks in the order given. With ``cascade`` a sample
that an earlier attack (or any attack at a smaller eps) already fooled is not attacked again: its row
records the adversarial example that fooled it (valid at every larger eps), so robust accuracy is the
per-sample worst case over all attacks, AutoAttack's rule. Every batch of rows is one transaction.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from attacks import ATTACKS, AttackParams, Threat, run_attack
from attacks.views import TaskView
from robustbench_ofa.data.types import Sample
from robustbench_ofa.evaluation.config import EvalConfig
from robustbench_ofa.evaluation.store import ResultsStore
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

#: The white-box attack of the large-eps sanity check and of the transfer matrix.
SANITY_ATTACK = TRANSFER_ATTACK = "pgd"
DataSource = Callable[[str, int], list[Sample]]


def sample_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (never Python's salted ``hash``)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _sample_rows(samples: Sequence[Sample]):
    """What reports show of each sample: its text, reference (box in original pixels) and image size."""
    for s in samples:
        ref = (json.dumps([round(float(v), 2) for v in s.box]) if s.box is not None
               else task_class(s.task).reference_text(s))
        yield (s.task, s.uid, s.text, ref, s.image.width, s.image.height)


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    arr = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class Evaluator:
    """Runs an evaluation into a ``ResultsStore``; rerunning the same command resumes it."""

    def __init__(self, config: EvalConfig, store: ResultsStore, load: VariantLoader, data: DataSource,
                 progress: bool = True):
        self.cfg = config
        self.store = store
        self.load = load
        self.data = data
        self.progress = progress

    # -- public ------------------------------------------------------------------------------------
    def run(self, variant_names: Sequence[str]) -> None:
        for name in variant_names:
            lv = self.load(name)
            lv.model.to(self.cfg.device).eval()
            for task_name in self.cfg.tasks:
                task, samples = self._task_and_samples(lv, task_name)
                self.store.add_samples(_sample_rows(samples))
                self._clean(lv, task, samples)
                self._determinism(lv, task, samples)
                for norm in Threat.image():
                    names = [a for a in self.cfg.attacks if ATTACKS.get(a).threat is norm]
                    ladder = self.cfg.ladder(norm) if names else []
                    for i, (label, eps) in enumerate(ladder):
                        smaller = [e for _, e in ladder[:i]]
                        for j, attack in enumerate(names):
                            self._attack_unit(lv, task, samples, attack, norm, label, eps, [(norm, smaller)],
                                              names[:j])
                self._text_units(lv, task, samples)
                self._sanity(lv, task, samples)
            del lv
        if self.cfg.transfer and len(variant_names) > 1:
            self._transfer(list(variant_names))

    def check_compatible(self, tasks: Sequence[Task]) -> None:
        """Refuse impossible attack/task pairs before any work."""
        for task in tasks:
            for a in self.cfg.attacks:
                ATTACKS.get(a).check_task(task)

    # -- pieces ------------------------------------------------------------------------------------
    def _task_and_samples(self, lv: LoadedVariant, task_name: str) -> tuple[Task, list[Sample]]:
        task = get_task(task_name, lv.tokenizer, lv.image_size, beam=self.cfg.beam)
        samples = self.data(task_name, self.cfg.n_samples)
        task.prepare(samples)
        return task, samples

    def _batches(self, items: list, size: int | None = None):
        size = size or self.cfg.batch_size
        for i in range(0, len(items), size):
            yield items[i:i + size]

    def _clean(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        done = self.store.clean_rows(lv.name, task.name)
        todo = [s for s in samples if s.uid not in done]
        bar = tqdm(total=len(todo), desc=f"{lv.name} {task.name} clean", disable=not self.progress or not todo,
                   leave=False)
        for chunk in self._batches(todo):
            t0 = time.perf_counter()
            batch = task.collate(chunk).to(self.cfg.device)
            preds = task.predict(lv.model, batch)
            dt = (time.perf_counter() - t0) / len(chunk)
            self.store.add_clean((lv.name, task.name, s.uid, task.describe(p.value), p.score, int(p.correct), dt)
                                 for s, p in zip(chunk, preds))
            bar.update(len(chunk))
        bar.close()

    def _determinism(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        if self.store.has_check(lv.name, task.name, "nondeterminism"):
            return
        batch = task.collate(samples[: min(4, len(samples))]).to(self.cfg.device)
        with torch.no_grad():
            a = task.loss(lv.model, batch)
            b = task.loss(lv.model, batch)
        self.store.add_check(lv.name, task.name, "nondeterminism", float((a - b).abs().max()),
                             "max |difference| of two identical forward passes (dropout left on?)")

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
        if cfg.cascade:
            for inorm, values in inherit:
                for uid, row in store.fooled_uids(lv.name, task.name, inorm, values).items():
                    inherited.setdefault(uid, row)
        words = cfg.text.words if ATTACKS.get(attack).modality != "image" else None
        cascaded = {}
        if cfg.cascade and earlier:
            now = store.fooled_uids(lv.name, task.name, norm, [eps])
            cascaded = {u: r for u, r in now.items() if r["attack"] in earlier}
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
        example_uids = {s.uid for s in samples[: cfg.n_examples]}
        bar = tqdm(total=len(to_attack), desc=f"{lv.name} {task.name} {attack} {label}", leave=False,
                   disable=not self.progress or not to_attack)
        for chunk in self._batches(to_attack):
            if all(s.uid in done for s in chunk):
                bar.update(len(chunk))
                continue
            rows, examples = self._attack_batch(lv, task, chunk, attack, norm, label, eps, clean, example_uids)
            store.add_results(rows, examples)
            bar.update(len(chunk))
        bar.close()

    def _attack_batch(self, lv, task, chunk, attack, norm, label, eps, clean, example_uids):
        spec = ATTACKS.get(attack)
        if spec.modality != "image":
            return self._text_batch(lv, task, chunk, attack, norm, label, eps, clean, example_uids)
        cfg = self.cfg
        batch = task.collate(chunk).to(cfg.device)
        seeds = [sample_seed(cfg.seed, lv.name, task.name, attack, norm, label, s.uid) for s in chunk]
        view = TaskView(lv.model, task, batch)
        t0 = time.perf_counter()
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
            outcomes = run_text_attack(attack, lv.model, task, chunk, batch.images, budget, seeds, scores,
                                       cfg.caption_drop)
            ids = source_ids(task, chunk, [o.adversarial for o in outcomes]).to(cfg.device)
            adv = batch.images
        else:  # a joint attack: its runner does both stages
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
                             words_changed=o.words_changed, n_words=o.n_words))
            if s.uid in example_uids:
                examples.append((lv.name, task.name, attack, label, s.uid, "text", None, o.adversarial))
                if norm is not Threat.TEXT:
                    examples.append((lv.name, task.name, "clean", "", s.uid, "image", _png(batch.images[i]), cpred))
                    examples.append((lv.name, task.name, attack, label, s.uid, "adv", _png(adv[i]),
                                     task.describe(p_.value)))
        return rows, examples

    def _sanity(self, lv: LoadedVariant, task: Task, samples: list[Sample]) -> None:
        """PGD at a very large eps must drive accuracy near 0; if not, gradients are likely masked."""
        if self.store.has_check(lv.name, task.name, "large_eps_robust_acc"):
            return
        clean = self.store.clean_rows(lv.name, task.name)
        chosen = [s for s in samples if clean[s.uid][2]][: self.cfg.sanity_samples]
        if not chosen:
            return
        batch = task.collate(chosen).to(self.cfg.device)
        seeds = [sample_seed(self.cfg.seed, "sanity", s.uid) for s in chosen]
        params = AttackParams(steps=max(10, self.cfg.params.steps), early_stop=True)
        res = run_attack(SANITY_ATTACK, TaskView(lv.model, task, batch), batch.images, self.cfg.sanity_eps, params, seeds)
        preds = task.predict(lv.model, batch, images=res.adv)
        robust = sum(self._adv_correct(task, p, clean[s.uid][1]) for s, p in zip(chosen, preds)) / len(chosen)
        self.store.add_check(lv.name, task.name, "large_eps_robust_acc", robust,
                             f"PGD-{params.steps} at L-inf eps {self.cfg.sanity_eps} on {len(chosen)} samples")

    def _transfer(self, names: list[str]) -> None:
        """Adversarial images crafted on each variant (PGD, middle eps, no early stop), scored on every other."""
        label, eps = self.cfg.eps[len(self.cfg.eps) // 2]
        params = AttackParams(steps=self.cfg.params.steps, alpha=self.cfg.params.alpha, early_stop=False)
        crafted: dict[tuple[str, str], torch.Tensor] = {}
        for src in names:
            lv = None
            for task_name in self.cfg.tasks:
                if self._transfer_done(src, names, task_name, label):
                    continue
                lv = lv or self.load(src)
                lv.model.to(self.cfg.device).eval()
                task, samples = self._task_and_samples(lv, task_name)
                chosen = samples[: self.cfg.transfer_samples]
                advs = []
                for chunk in self._batches(chosen):
                    batch = task.collate(chunk).to(self.cfg.device)
                    seeds = [sample_seed(self.cfg.seed, "transfer", src, s.uid) for s in chunk]
                    advs.append(run_attack(TRANSFER_ATTACK, TaskView(lv.model, task, batch), batch.images, eps, params,
                                           seeds).adv)
                crafted[(src, task_name)] = torch.cat(advs)
        for tgt in names:
            lv = None
            for task_name in self.cfg.tasks:
                sources = [s for s in names if (s, task_name) in crafted]
                if not sources:
                    continue
                lv = lv or self.load(tgt)
                lv.model.to(self.cfg.device).eval()
                task, samples = self._task_and_samples(lv, task_name)
                chosen = samples[: self.cfg.transfer_samples]
                clean = self.store.clean_rows(tgt, task_name)
                for src in sources:
                    rows = []
                    adv_all = crafted[(src, task_name)]
                    for k, chunk in enumerate(self._batches(chosen)):
                        batch = task.collate(chunk).to(self.cfg.device)
                        adv = adv_all[k * self.cfg.batch_size: k * self.cfg.batch_size + len(chunk)]
                        preds = task.predict(lv.model, batch, images=adv)
                        for s, p in zip(chunk, preds):
                            c = clean.get(s.uid)
                            rows.append((src, tgt, task_name, TRANSFER_ATTACK, label, s.uid, int(c[2]) if c else 0,
                                         int(self._adv_correct(task, p, c[1] if c else 0.0))))
                    self.store.add_transfer(rows)

    def _transfer_done(self, src: str, names: list[str], task_name: str, label: str) -> bool:
        n = self.store.db.execute("SELECT COUNT(*) FROM transfer WHERE source=? AND task=? AND eps_label=?",
                                  (src, task_name, label)).fetchone()[0]
        return n >= len(names) * min(self.cfg.transfer_samples, self.cfg.n_samples)
