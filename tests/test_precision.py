"""``evaluate --precision``: attacks may run in TF32/bf16, predictions are judged in fp32, the adversarial
image stays fp32 and inside its budget, and the precision is recorded with the run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from robustbench_ofa.cli import main
from robustbench_ofa.evaluation.precision import attack_precision
from robustbench_ofa.zoo.recipe import micro_recipe

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


def _evaluate(home, out, precision: str, *extra: str) -> int:
    return main(["evaluate", "--attack", "pgd,pgdl2", "--model", "micro-finetune", "--task", "ve",
                 "--n-samples", "12", "--batch-size", "4", "--steps", "3", "--no-transfer",
                 "--sanity-samples", "3", "--sanity-steps", "2", "--sanity-restarts", "1",
                 "--precision", precision, "--home", str(home), "--out", str(out), "--report", "md", "--quiet",
                 *extra])


def _rows(out, sql: str) -> list:
    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute(sql).fetchall()
    db.close()
    return rows


def test_bf16_attacks_are_judged_in_fp32_and_stay_in_budget(micro, tmp_path, capsys):
    assert _evaluate(micro, tmp_path / "fp32", "fp32") == 0
    assert _evaluate(micro, tmp_path / "bf16", "bf16") == 0
    clean = "SELECT variant, task, uid, pred, score, correct FROM clean ORDER BY uid"
    assert _rows(tmp_path / "bf16", clean) == _rows(tmp_path / "fp32", clean)  # clean judged in fp32
    attacked = ("SELECT attack, eps, uid, linf, l2 FROM results WHERE status='attacked' ORDER BY attack, eps, uid")
    lo, hi = _rows(tmp_path / "bf16", attacked), _rows(tmp_path / "fp32", attacked)
    assert len(lo) == len(hi) > 0
    assert any(a[3:] != b[3:] for a, b in zip(lo, hi))  # the attacks did run in bf16
    for attack, eps, _, linf, l2 in lo:  # the fp32 image was projected onto the budget
        assert (linf if attack == "pgd" else l2) <= eps + 1e-6
    summary = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    assert summary["run"]["precision"] == "attacks bf16, predictions fp32"
    assert summary["settings"]["precision"] == "bf16"
    assert "precision" not in json.loads((tmp_path / "fp32" / "summary.json").read_text())["settings"]
    assert "attacks bf16, predictions fp32" in (tmp_path / "bf16" / "report.md").read_text()


def test_tf32_without_cuda_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--attack", "pgd", "--precision", "tf32", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["robust-ofa: error: --precision tf32: TF32 exists on CUDA devices only (--device is cpu)"]


def test_attack_precision_context():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with attack_precision("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32
    with attack_precision("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    before = torch.backends.cuda.matmul.allow_tf32
    with attack_precision("tf32", "cpu"):
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_compile_runs_the_attacks_compiled_and_judges_eagerly(micro, tmp_path, capsys, monkeypatch,
                                                               dynamo_state):
    """``--compile`` through a counting dynamo backend (AOTAutograd, no C++ build): the compiled graphs run
    inside the attacks, forward and backward, and never for a judgement; rows equal the eager run's."""
    import contextlib

    import torch._dynamo
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    import robustbench_ofa.evaluation.runner as runner
    from robustbench_ofa.evaluation.precision import COMPILE_BACKEND_ENV

    calls = {"fwd": 0, "bwd": 0, "outside_attacks": 0}
    depth = [0]

    def counting(kind):
        def compiler(gm, example_inputs):
            def run(*args):
                calls[kind] += 1
                calls["outside_attacks"] += kind == "fwd" and depth[0] == 0
                return gm(*args)
            return make_boxed_func(run)  # AOTAutograd's calling convention (else it warns on every call)
        return compiler

    passes = runner.attack_passes

    @contextlib.contextmanager
    def tracked(*args):
        depth[0] += 1
        try:
            with passes(*args):
                yield
        finally:
            depth[0] -= 1

    monkeypatch.setattr(runner, "attack_passes", tracked)

    torch._dynamo.reset()
    name = _unique_backend("ro_test_counting", aot_autograd(fw_compiler=counting("fwd"),
                                                            bw_compiler=counting("bwd")))
    monkeypatch.setenv(COMPILE_BACKEND_ENV, name)
    assert _evaluate(micro, tmp_path / "eager", "fp32") == 0
    assert _evaluate(micro, tmp_path / "compiled", "fp32", "--compile") == 0
    torch._dynamo.reset()
    assert calls["fwd"] > 0 and calls["bwd"] > 0  # the attacks' passes ran compiled, with gradients
    assert calls["outside_attacks"] == 0  # clean and adversarial predictions never did
    clean = "SELECT variant, task, uid, pred, score, correct FROM clean ORDER BY uid"
    assert _rows(tmp_path / "compiled", clean) == _rows(tmp_path / "eager", clean)
    rows = ("SELECT attack, eps, uid, status, adv_pred, adv_correct FROM results ORDER BY attack, eps, uid")
    assert _rows(tmp_path / "compiled", rows) == _rows(tmp_path / "eager", rows)
    summary = json.loads((tmp_path / "compiled" / "summary.json").read_text())
    assert summary["settings"]["compile"] is True
    assert summary["run"]["precision"] == "attacks fp32 compiled, predictions fp32 eager"
    assert "compile" not in json.loads((tmp_path / "eager" / "summary.json").read_text())["settings"]
    assert summary["run"]["compile"]["graphs"] > 0 and summary["run"]["compile"]["limit_reached_in"] == []
    assert "recompile limit" not in capsys.readouterr().err


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)


def _unique_backend(name: str, backend) -> str:
    """Register ``backend`` under a fresh name (dynamo refuses a name twice, so a rerun of a test in one
    process would fail)."""
    import uuid

    import torch._dynamo

    unique = f"{name}_{uuid.uuid4().hex[:8]}"
    torch._dynamo.register_backend(backend, unique)
    return unique


@pytest.fixture
def dynamo_state():
    """Dynamo's caches, its recompile limit and the limit watch as they were before the test."""
    import logging

    import torch._dynamo
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    from robustbench_ofa.evaluation import precision

    torch._dynamo.reset()
    limit, hits, failed = torch._dynamo.config.recompile_limit, list(precision._WATCH.hits), list(precision._FAILED)
    eager_bw = functorch_config.force_non_lazy_backward_lowering
    tiling = inductor_config.triton.coalesce_tiling_analysis
    yield precision
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = limit
    precision._WATCH.hits[:] = hits
    precision._FAILED[:] = failed
    functorch_config.force_non_lazy_backward_lowering = eager_bw
    inductor_config.triton.coalesce_tiling_analysis = tiling
    logging.getLogger("torch._dynamo.convert_frame").removeHandler(precision._WATCH)


def test_a_failed_compilation_runs_that_function_eagerly_and_is_reported(micro, tmp_path, capsys, monkeypatch,
                                                                           dynamo_state):
    """A compiler fault must not end a long run (torch 2.11's inductor stopped on an H100 with an
    AssertionError while recompiling the encoder for dynamic shapes): the function whose compilation fails
    runs eagerly from then on, the rows equal the eager run's, and the run says which function failed.
    Deliberately broken: a backend whose backward compiler raises from its second graph on; and without
    compiling the backward with its forward, the same fault escapes from the attack's gradient call."""
    import torch._dynamo
    import torch._functorch.config as functorch_config
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    bw_graphs = [0]

    def fw(gm, example_inputs):
        return make_boxed_func(gm.forward)

    def bw(gm, example_inputs):
        bw_graphs[0] += 1
        if bw_graphs[0] >= 2:
            raise AssertionError("planted compiler fault")
        return make_boxed_func(gm.forward)

    name = _unique_backend("ro_test_faulty", aot_autograd(fw_compiler=fw, bw_compiler=bw))
    monkeypatch.setenv(dynamo_state.COMPILE_BACKEND_ENV, name)
    assert _evaluate(micro, tmp_path / "eager", "fp32") == 0
    capsys.readouterr()
    assert _evaluate(micro, tmp_path / "compiled", "fp32", "--compile") == 0
    err = capsys.readouterr().err
    failed = json.loads((tmp_path / "compiled" / "summary.json").read_text())["run"]["compile"]["failed_in"]
    assert failed and all(f.split(":")[0] in ("OFAEncoder", "OFADecoder") for f in failed)
    assert all("BackendCompilerFailed (AssertionError: planted compiler fault)" in f for f in failed)
    assert "--compile: torch" in err and "failed to compile" in err and "planted compiler fault" in err
    for sql in ("SELECT variant, task, uid, pred, score, correct FROM clean ORDER BY uid",
                "SELECT attack, eps, uid, status, adv_pred, adv_correct, linf, l2 FROM results ORDER BY attack, eps, uid"):
        assert _rows(tmp_path / "compiled", sql) == _rows(tmp_path / "eager", sql)

    torch._dynamo.reset()
    bw_graphs[0] = 0
    monkeypatch.setattr(dynamo_state, "_compile_backward_with_forward", lambda: None)
    functorch_config.force_non_lazy_backward_lowering = False  # the fixture restores it
    with pytest.raises(AssertionError, match="planted compiler fault"):
        _evaluate(micro, tmp_path / "lazy", "fp32", "--compile")


def test_compile_model_turns_off_the_faulty_tiling_analysis_for_inductor_only(dynamo_state, monkeypatch):
    import torch._inductor.config as inductor_config

    inductor_config.triton.coalesce_tiling_analysis = True
    monkeypatch.setenv(dynamo_state.COMPILE_BACKEND_ENV, "eager")
    dynamo_state.compile_model(_Toy())
    assert inductor_config.triton.coalesce_tiling_analysis is True
    monkeypatch.delenv(dynamo_state.COMPILE_BACKEND_ENV)
    dynamo_state.compile_model(_Toy())  # torch.compile is lazy: nothing is built here
    assert inductor_config.triton.coalesce_tiling_analysis is False


def test_compile_model_compiles_gradient_passes_only(dynamo_state, monkeypatch):
    """Passes under ``no_grad`` (in-loop decoding of generated answers, text attacks) run eagerly: every
    grad-mode flip and every length of a decoding cache was a recompile, and on the gate models' config
    the decoder reached dynamo's limit of 8 within 16 samples and ran eagerly from then on."""
    import torch._dynamo

    seen = []

    def backend(gm, example_inputs):
        seen.append(torch.is_grad_enabled())
        return gm.forward

    monkeypatch.setenv(dynamo_state.COMPILE_BACKEND_ENV, _unique_backend("ro_test_grad_modes", backend))
    toy = _Toy()
    dynamo_state.compile_model(toy)
    x = torch.randn(4, 3, requires_grad=True)
    with torch.no_grad():
        toy.decoder(toy.encoder(x))
    assert seen == []  # eager
    toy.decoder(toy.encoder(x)).sum().backward()
    assert seen == [True, True] and x.grad is not None
    assert torch._dynamo.config.recompile_limit >= 32


def test_a_function_past_the_recompile_limit_is_reported_and_warned(dynamo_state, capsys):
    """Dynamo keeps no count of recompile-limit hits (past it, a function silently runs eagerly): the run
    records the hits made during it and warns. Deliberately broken: a limit of 1 and shapes that change on
    every call."""
    import torch._dynamo

    from robustbench_ofa.commands.evaluate import _compile_report

    def shaped(x):
        return x * 2

    dynamo_state._watch_limits()
    before = dynamo_state.compile_mark()
    assert _compile_report(before)["limit_reached_in"] == []
    with torch._dynamo.config.patch(recompile_limit=1, automatic_dynamic_shapes=False):
        f = torch.compile(shaped, backend="eager")
        for n in (2, 3, 4):
            f(torch.ones(n))
    stats = _compile_report(before)
    assert len(stats["limit_reached_in"]) == 1 and "'shaped'" in stats["limit_reached_in"][0]
    assert stats["limit_reached_in"][0].endswith("recompile_limit 1")
    err = capsys.readouterr().err
    assert "--compile: torch.compile reached a recompile limit in" in err and "'shaped'" in err
    # a later evaluation in the same process (robust-ofa study) reports only its own hits
    assert dynamo_state.compile_stats(dynamo_state.compile_mark())["limit_reached_in"] == []


def test_compiled_modules_run_eagerly_outside_the_attack_context():
    """The stance switch itself: a compiled module called under ``judged_eagerly`` never reaches the
    backend; inside ``attack_passes`` it does."""
    import torch._dynamo

    from robustbench_ofa.evaluation.precision import attack_passes, judged_eagerly

    seen = []

    def backend(gm, example_inputs):
        seen.append(1)
        return gm.forward

    lin = torch.nn.Linear(3, 2)
    lin.forward = torch.compile(lin.forward, backend=backend)
    x = torch.randn(4, 3)
    torch._dynamo.reset()
    with judged_eagerly(True):
        lin(x)
        assert seen == []
        with attack_passes("fp32", "cpu", True):
            lin(x)
        assert seen == [1]
        lin(x)
        assert seen == [1]
    torch._dynamo.reset()


def test_compile_on_a_torch_without_set_stance_is_one_line(monkeypatch, tmp_path, capsys):
    """On torch < 2.6 ``--compile`` is one line from the config's checks, before any zoo is built or a
    finished run's files in ``--out`` are cleared; ``judged_eagerly`` says the same to code that skips them."""
    import torch

    from robustbench_ofa.cli import main
    from robustbench_ofa.errors import RobustOFAError
    from robustbench_ofa.evaluation.config import EvalConfig
    from robustbench_ofa.evaluation.precision import judged_eagerly

    monkeypatch.delattr(torch.compiler, "set_stance")
    with pytest.raises(RobustOFAError, match=r"--compile needs torch >= 2.6"):
        EvalConfig(attacks=["pgd"], tasks=["ve"], compile=True).validate()
    EvalConfig(attacks=["pgd"], tasks=["ve"]).validate()
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # a finished run's file, which opening the store would clear
    assert main(["evaluate", "--attack", "pgd", "--compile", "--home", str(tmp_path / "empty-home"),
                 "--out", str(out), "--report", ""]) != 0
    assert "--compile needs torch >= 2.6" in capsys.readouterr().err
    assert (out / "summary.json").is_file() and not (tmp_path / "empty-home").exists()  # no zoo built
    with pytest.raises(RobustOFAError, match=r"--compile needs torch >= 2.6"):
        judged_eagerly(True)
    with judged_eagerly(False):  # without --compile nothing is asked of torch.compiler
        pass


def test_bf16_in_loop_stops_are_confirmed_in_fp32():
    """A bf16 "fooled" seen inside PGD stopped a row at the decision boundary and the fp32 judgement then
    called it robust (low precision looking like robustness). Under ``attack_passes`` every in-loop stop
    is confirmed in fp32, so no stopped row is judged correct; without the confirmation (the negative
    control, plain autocast) some are, on the committed gate model."""
    from attacks import AttackParams, run_attack
    from attacks.views import TaskView
    from robustbench_ofa import zoo
    from robustbench_ofa.evaluation.precision import attack_passes, attack_precision
    from robustbench_ofa.tasks import get_task
    from robustbench_ofa.zoo.recipe import default_recipe

    gate = Path(__file__).resolve().parents[1] / "reports" / "baselines" / "gate-models" / "gate-finetune"
    e = zoo.get(str(gate), None, device="cpu", progress=False, recipe=default_recipe())
    samples = zoo.embedded_test_samples("vqa", 96, default_recipe())
    task = get_task("vqa", e.tokenizer, e.image_size, beam=3)
    task.prepare(samples)
    model = e.model.eval()
    ok = [s for s, p in zip(samples, task.predict(model, task.collate(samples))) if p.correct]
    batch = task.collate(ok)

    def overturned(context) -> tuple[int, int]:
        with context:
            res = run_attack("pgd", TaskView(model, task, batch), batch.images, 8 / 255, AttackParams(steps=10),
                             list(range(len(ok))))
        still = torch.tensor([p.correct for p in task.predict(model, batch, images=res.adv)])
        return int(res.stopped.sum()), int((res.stopped.cpu() & still).sum())

    stopped, wrong_stops = overturned(attack_passes("bf16", "cpu", False))
    assert stopped > 0 and wrong_stops == 0
    assert overturned(attack_precision("bf16", "cpu"))[1] > 0
