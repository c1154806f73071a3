"""Sharded evaluation under torchrun (gloo, CPU): the same rows and numbers as one process, whatever the
world size and batch size; a rank killed mid-run resumes (even with one process) to the same numbers; no
row duplicated; different weights on two ranks refused; devices this machine lacks refused in one line.

Every comparison is of the stored rows themselves (clean predictions, adversarial predictions and scores,
perturbation norms, gradient counts, checks, transfer rows, example PNGs), timings excluded: a float
that depends on which batch or rank a sample landed in would show here even where no accuracy moves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_ofa.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: Runs the CLI with the micro recipe as the default zoo (what the ``micro`` fixtures patch in-process).
ENTRY = """
from robustbench_ofa.zoo import recipe
_micro = recipe.micro_recipe()
recipe.default_recipe = lambda: _micro
from robustbench_ofa.cli import main
raise SystemExit(main())
"""
ATTACKS = "fgsm,pgd,pgdl2,deepwordbug,co-attack,square,apgd-ce"
TABLES = ("clean", "results", "transfer", "checks", "examples", "samples")


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "micro_cli.py"
    path.write_text(ENTRY)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist-home")


def _args(home: Path, out: Path, batch_size: int = 2) -> list[str]:
    """About 3 of the 12 samples per model and task are clean-correct (micro models): batches of 2 give
    each rank of two a batch of every attack. Square gets 40 queries: at its default 500 it took 60 % of a
    run, and its draws, not its budget, are what the comparisons test."""
    return ["evaluate", "--attack", ATTACKS, "--model", "micro-finetune", "--model", "micro-prompt-16",
            "--n-samples", "12", "--batch-size", str(batch_size), "--steps", "3", "--queries", "40",
            "--sanity-samples", "6",
            "--sanity-steps", "3", "--sanity-restarts", "1", "--home", str(home), "--out", str(out),
            "--report", "", "--quiet"]


def _env(threads: int = 1) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}


def _run(entry: Path, args: list[str], nproc: int = 1, **kw) -> subprocess.CompletedProcess:
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
           if nproc > 1 else [sys.executable])
    return subprocess.run([*cmd, str(entry), *args], env=_env(), capture_output=True, text=True, timeout=600,
                          **kw)


def _rows(out: Path) -> dict[str, list]:
    db = sqlite3.connect(out / "results.sqlite")
    tables = {}
    for t in TABLES:
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({t})") if r[1] != "seconds"]
        tables[t] = sorted(db.execute(f"SELECT {','.join(cols)} FROM {t}").fetchall(), key=repr)
    db.close()
    return tables


def _numbers(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("run")
    summary["settings"].pop("batch_size")
    for row in summary["attacks"]:
        row.pop("seconds", None)
    return summary


@pytest.fixture(scope="module")
def reference(entry, home, tmp_path_factory) -> Path:
    """One process, one thread (builds the micro zoo)."""
    out = tmp_path_factory.mktemp("one")
    proc = _run(entry, _args(home, out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_reference_run_has_attacked_samples_with_trajectory_dependent_floats(reference):
    """What the exact comparisons below can see: every attack ran on samples, and the attacked PGD and
    PGD-L2 rows' perturbation norms (which depend on each random start and every step taken) are all
    distinct floats, so a seed or batch effect would change them; transfer rows and PNGs are compared too."""
    rows = _rows(reference)
    db = sqlite3.connect(reference / "results.sqlite")
    attacked, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT l2 || ',' || linf) FROM results "
                                    "WHERE status='attacked' AND attack IN ('pgd', 'pgdl2')").fetchone()
    attacks = {r[0] for r in db.execute("SELECT DISTINCT attack FROM results WHERE status='attacked'")}
    assert attacks == set(ATTACKS.split(",")) and attacked >= 30 and distinct == attacked
    assert rows["transfer"] and rows["examples"]


def test_two_processes_equal_one_process_exactly(entry, home, reference, tmp_path):
    out = tmp_path / "two"
    proc = _run(entry, _args(home, out), nproc=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _rows(out) == _rows(reference)
    assert _numbers(out) == _numbers(reference)
    dist = json.loads((out / "summary.json").read_text())["run"]["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert len(dist["wait_seconds"]) == len(dist["gather_seconds"]) == 2
    assert 0 <= dist["gather_share"] < 1 and 0 <= dist["wait_share"] < 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_without_a_shared_filesystem_equal_one_process(entry, home, reference, tmp_path):
    """Multi-node torchrun (c10d rendezvous), simulated by two launches on this machine that share no
    folder: each "node" has its own working directory (the same relative --out) and its own zoo home, one
    of them empty, so that node builds its own zoo (the build is deterministic: the weight-hash check
    passes). Rank 0's node alone gets the results, equal to one process's; the other node's --out stays
    empty."""
    port, nodes = _free_port(), []
    for name in ("a", "b"):
        node = tmp_path / name
        node.mkdir()
        args = _args(home if name == "a" else node / "home", Path("out"))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-nodes", str(entry), *args]
        with open(tmp_path / f"{name}.log", "w") as log:  # a file, not a pipe: neither launch can block on it
            nodes.append((node, subprocess.Popen(cmd, env=_env(), cwd=node, stdout=log, stderr=log)))
    for node, job in nodes:
        job.wait(timeout=600)
        assert job.returncode == 0, (tmp_path / f"{node.name}.log").read_text()[-2000:]
    written = [node for node, _ in nodes if (node / "out" / "results.sqlite").exists()]
    assert len(written) == 1 and not (next(n for n, _ in nodes if n not in written) / "out" / "summary.json").exists()
    out = written[0] / "out"
    assert _rows(out) == _rows(reference) and _numbers(out) == _numbers(reference)
    dist = json.loads((out / "summary.json").read_text())["run"]["distributed"]
    assert dist["world_size"] == 2
    assert any((tmp_path / "b" / "home").rglob("zoo.json"))  # node b built its own zoo


def _close(a, b, rel: float = 1e-4) -> bool:
    """Equal, except floats within ``rel`` (recursively through rows, lists and dicts)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    return a == b


def test_batch_size_does_not_change_the_numbers(entry, home, reference, tmp_path):
    """Per-sample seeds (random starts, text-attack search): at another batch size every prediction,
    status, correctness and count is the same, and the floats (norms, start-gradient norms) agree within
    1e-4 relative on at least 95 % of the attacked rows. Why not bitwise: BLAS sums a batch of 2 and of 3 in another
    order (about 1e-7 relative), and an iterative attack can carry that into a norm (one PGD-L2 row of
    54 moved 0.4 %; its prediction did not). A seed that depended on the sample's place in its batch
    changes the random start of most PGD rows (tried: caught). torchattacks' own stochastic attacks
    (APGD, Square) draw per batch, so they are left out here (README: what is exact)."""
    out = tmp_path / "bs3"
    proc = _run(entry, _args(home, out, batch_size=3))
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine, ref = _rows(out), _rows(reference)
    per_sample = {"fgsm", "pgd", "pgdl2", "deepwordbug"}
    pick = lambda rows: [r for r in rows if r[2] in per_sample]  # noqa: E731  (results: attack is column 3)
    exact = lambda rows: [tuple(v for v in r if not isinstance(v, float)) for r in rows]  # noqa: E731
    for table in (pick(mine["results"]), pick(ref["results"])), (mine["clean"], ref["clean"]):
        assert exact(table[0]) == exact(table[1])
    pairs = [(a, b) for a, b in zip(pick(mine["results"]), pick(ref["results"])) if b[7] == "attacked"]
    moved = sum(not _close(a, b) for a, b in pairs)
    assert moved <= 0.05 * len(pairs)  # 1 of 54 here; a batch-place seed moved 11
    assert exact(mine["transfer"]) == exact(ref["transfer"])
    assert _close(_numbers(out), _numbers(reference), rel=1e-3)


def _result_rows(out: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True, timeout=1)
        n = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


#: ``ENTRY`` whose rank 1 stops for good once its replica of the store holds ``PAUSE_AT_ROWS`` result rows,
#: after writing "pid rows" to ``PAUSE_MARKER``: the test kills it there, mid-run, on a machine of any speed.
PAUSING_ENTRY = """
import os, time
from pathlib import Path
from robustbench_ofa.evaluation.store import ResultsStore
_add = ResultsStore.add_results
def _add_then_pause(self, rows, examples=()):
    _add(self, rows, examples)
    n = self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    if os.environ["RANK"] == "1" and n >= int(os.environ["PAUSE_AT_ROWS"]):
        marker = Path(os.environ["PAUSE_MARKER"])
        marker.with_suffix(".tmp").write_text(f"{os.getpid()} {n}")
        marker.with_suffix(".tmp").rename(marker)
        while True:
            time.sleep(60)
ResultsStore.add_results = _add_then_pause
""" + ENTRY


def _wait_for(what, job: subprocess.Popen, log: Path, hung_after: float = 900.0) -> None:
    """Until ``what()`` holds, while the job runs: an event, not a time (the job cannot finish without it;
    ``hung_after`` seconds only guard against a job that neither gets there nor ends)."""
    give_up = time.monotonic() + hung_after
    while not what():
        assert job.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < give_up, "the job hung: " + log.read_text()[-2000:]
        time.sleep(0.05)


def test_killed_rank_then_one_process_resumes_to_the_same_rows(entry, home, reference, tmp_path):
    """A rank killed mid-run: rank 1 pauses once 20 rows are stored (``PAUSING_ENTRY``) and is killed there,
    after rank 0's file holds the same rows (rank 0 writes them before its next collective, where it then
    waits for rank 1). Before, the test polled the file for 20 rows and killed a worker, racing the job's end."""
    out, marker, log = tmp_path / "killed", tmp_path / "paused", tmp_path / "job.log"
    pausing = tmp_path / "pausing_cli.py"
    pausing.write_text(PAUSING_ENTRY)
    total = len(_rows(reference)["results"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(pausing),
           *_args(home, out)]
    env = {**_env(), "PAUSE_AT_ROWS": "20", "PAUSE_MARKER": str(marker)}
    with log.open("w") as err:
        job = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        killed = False
        try:
            _wait_for(marker.exists, job, log)
            pid, seen = map(int, marker.read_text().split())
            _wait_for(lambda: _result_rows(out) >= seen, job, log)
            os.kill(pid, signal.SIGKILL)
            killed = True
            job.wait(timeout=300)
        finally:  # on a failure, no rank is left behind (the paused one would wait for ever)
            if job.poll() is None:
                job.terminate()  # torchrun stops its workers
                try:
                    job.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    job.kill()
                    job.wait()
            if marker.exists() and not killed:
                paused = int(marker.read_text().split()[0])
                with contextlib.suppress(OSError):  # only if it is still the paused rank
                    if str(pausing) in Path(f"/proc/{paused}/cmdline").read_text():
                        os.kill(paused, signal.SIGKILL)
    assert job.returncode != 0  # torchrun ends the job when a rank dies
    partial = _result_rows(out)
    assert 20 <= seen <= partial < total
    proc = _run(entry, _args(home, out))  # one process picks up what the two left
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _rows(out) == _rows(reference)  # nothing lost, nothing duplicated (same count, same rows)
    assert _numbers(out) == _numbers(reference)


def test_a_refused_resume_stops_every_rank_with_the_same_line(entry, home, reference, tmp_path):
    """Rank 0 alone opens the results file; its refusal (another run's settings) reaches every rank."""
    args = _args(home, reference)
    args[args.index("--n-samples") + 1] = "10"
    proc = _run(entry, args, nproc=2, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("holds a different run (setting 'n_samples' differs") == 2


HASH_CHECK = """
import sys
from pathlib import Path
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.distributed import check_same_weights, from_env
dist, _ = from_env("cpu")
same = sys.argv[1] == "same"
try:
    check_same_weights(dist, "m", {"model.safetensors": "ab" * 32 if same or dist.rank == 0 else "cd" * 32})
    said = "ok"
except RobustOFAError as exc:
    said = str(exc)
Path(sys.argv[2], f"rank{dist.rank}.txt").write_text(f"rank {dist.rank}: {said}")
dist.close()
"""


@pytest.mark.parametrize("case", ["same", "different"])
def test_weights_that_differ_between_ranks_are_refused_on_every_rank(tmp_path, case):
    script = tmp_path / "hash_check.py"
    script.write_text(HASH_CHECK)
    proc = _run(script, [case, str(tmp_path)], nproc=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    if case == "same":
        assert lines == ["rank 0: ok", "rank 1: ok"]
    else:
        assert len(lines) == 2 and all("rank 1 loaded other weights than rank 0 (model.safetensors sha256 "
                                       "cdcdcdcdcdcd... vs abababababab...)" in line for line in lines)


@pytest.mark.parametrize("device, expected", [
    ("cuda", "--device cuda: CUDA is not available on this machine"),
    ("cuda:3", "--device cuda:3: CUDA is not available on this machine"),
    ("tpu", "--device: 'tpu' is not a torch device (expected cpu, cuda or cuda:N)"),
])
def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, device, expected):
    import torch

    from robustbench_ofa.evaluation import models as evm

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the refusal is for machines without it

    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the device was refused")

    monkeypatch.setattr(evm, "resolve_models", refuse)
    assert main(["evaluate", "--attack", "pgd", "--device", device, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"robust-ofa: error: {expected}")


def test_python_dash_m_works_without_torchrun():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "robustbench_ofa", "info"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("robust-ofa ")


def test_rows_are_gathered_every_few_rounds_in_single_process_batch_order():
    """Under torchrun each rank queues its batches and the ranks gather every ``GATHER_ROUNDS`` rounds and
    at the end (not once per batch); what is stored comes in the one-process order of batches."""
    from robustbench_ofa.evaluation.config import EvalConfig
    from robustbench_ofa.evaluation.distributed import Dist
    from robustbench_ofa.evaluation.runner import GATHER_ROUNDS, Evaluator

    class TwoRanks(Dist):  # rank 0 of 2; rank 1's queue is simulated
        def all_gather(self, obj):
            return [obj, [(k + 1, f"rank1-batch{k + 1}") for k, _ in obj]]

    ev = Evaluator(EvalConfig(attacks=["pgd"], batch_size=1), None, None, None, progress=False,
                   dist=TwoRanks(rank=0, world=2))
    items = list(range(2 * (2 * GATHER_ROUNDS + 3)))  # batches of 1: 2 * GATHER_ROUNDS + 3 rounds of two
    flushes, stored = [], []
    for i, (k, chunk, n_round, flush) in enumerate(ev._buffered_rounds(items)):
        assert k == 2 * i and chunk == [2 * i] and n_round == 2
        ev._pending.append((k, f"rank0-batch{k}"))
        if flush:
            flushes.append(i)
            stored += ev._flush()
    assert flushes == [GATHER_ROUNDS - 1, 2 * GATHER_ROUNDS - 1, 2 * GATHER_ROUNDS + 2]
    assert [k for k, _ in stored] == list(range(len(items)))  # batch order, nothing lost or doubled
    # one process: every batch is stored as it ends, as before
    single = Evaluator(EvalConfig(attacks=["pgd"], batch_size=1), None, None, None, progress=False)
    assert all(flush for *_, flush in single._buffered_rounds(items))


#: Two ranks on the job's own clock: ``Dist`` reads the time as the number of ticks rank 1 has made (the size
#: of a shared file). Rank 1 waits until rank 0 has read its clock at its first collective (rank 0 then marks
#: it), ticks LATE times and joins: rank 1 is LATE late, counted in events, not seconds.
CLOCK = """
import json, sys, time
from pathlib import Path
import robustbench_ofa.distributed as process_group
from robustbench_ofa.evaluation.distributed import distributed_info, from_env
LATE = int(sys.argv[1])
ticks, arrived, out = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
dist, _ = from_env("cpu")

class JobClock:
    reads = 0

    def perf_counter(self) -> float:
        now = float(ticks.stat().st_size) if ticks.exists() else 0.0
        JobClock.reads += 1
        if dist.rank == 0 and JobClock.reads == 1:
            arrived.touch()  # after reading: rank 0 is at the collective, at tick 0
        return now

process_group.time = JobClock()
if dist.rank == 1:
    while not arrived.exists():
        time.sleep(0.01)
    ticks.write_bytes(b"x" * LATE)  # rank 1 arrives late: rank 0 waits, as for a slower rank's last batch
got = dist.all_gather(list(range(1000)))
assert got == [list(range(1000))] * 2
clocks = dist.all_gather(dist.clock())
if dist.is_main:
    out.write_text(json.dumps(distributed_info(dist, clocks, 4 * LATE)))
dist.close()
"""


def test_collective_time_separates_waiting_for_a_late_rank_from_gathering(tmp_path):
    """``run.distributed`` splits each rank's collective time into waiting (load imbalance) and gathering.
    Rank 1 arrives 1500 ticks of the job's clock late (``CLOCK``): rank 0's wait holds exactly those 1500,
    its gather none, and rank 1 neither (before the split, both were one number, so a slow rank read as
    a slow gather). On the job's clock rather than wall time, so a busy machine cannot move a number."""
    script, out = tmp_path / "clock.py", tmp_path / "clock.json"
    script.write_text(CLOCK)
    proc = _run(script, ["1500", str(tmp_path / "ticks"), str(tmp_path / "arrived"), str(out)], nproc=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(out.read_text())
    assert info["wait_seconds"] == [1500.0, 0.0] and info["gather_seconds"] == [0.0, 0.0]
    assert info["wait_share"] == 0.25 and info["gather_share"] == 0.0


@pytest.mark.parametrize("world, n_batches", [(2, 11), (3, 2), (2, 1), (3, 10), (2, 0)])
def test_every_rank_makes_the_same_gathers_and_every_batch_is_stored_once(world, n_batches):
    """Each rank's own ``_buffered_rounds`` and ``_flush`` (an odd number of batches, more ranks than
    batches, no batch), the ranks as threads whose ``all_gather`` meets at a barrier like a collective: a
    rank that flushed at other rounds than the rest would break the barrier. A rank without a batch in a
    round queues nothing, and every rank stores every batch once, in the one-process order."""
    import threading
    from dataclasses import dataclass

    from robustbench_ofa.evaluation.config import EvalConfig
    from robustbench_ofa.evaluation.distributed import Dist
    from robustbench_ofa.evaluation.runner import Evaluator

    barrier, slots = threading.Barrier(world, timeout=20), [None] * world

    @dataclass
    class ThreadRank(Dist):
        def all_gather(self, obj):
            slots[self.rank] = obj
            barrier.wait()
            out = list(slots)
            barrier.wait()
            return out

    items = list(range(n_batches))  # batches of 1
    stored: dict[int, list] = {}
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        try:
            ev = Evaluator(EvalConfig(attacks=["pgd"], batch_size=1), None, None, None, progress=False,
                           dist=ThreadRank(rank=rank, world=world))
            mine = stored.setdefault(rank, [])
            for i, (k, chunk, n_round, flush) in enumerate(ev._buffered_rounds(items)):
                assert n_round == len(items[i * world:(i + 1) * world])
                if chunk:
                    assert chunk == [k] and k % world == rank
                    ev._pending.append((k, f"r{rank}"))
                if flush:
                    mine += ev._flush()
            assert not ev._pending  # nothing left unflushed at the end
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for rank in range(world):
        assert [k for k, _ in stored[rank]] == list(range(n_batches))
        assert all(tag == f"r{k % world}" for k, tag in stored[rank])


def test_cuda_under_torchrun_is_nccl_on_the_local_rank_gpu(monkeypatch):
    """The NCCL wiring, which no CI machine can run (two GPUs needed): with ``--device cuda`` under
    torchrun, rank r of a node uses ``cuda:LOCAL_RANK`` (whatever index was asked), sets it as the current
    device before the process group exists, asks for NCCL with a timeout long enough for rank 0's zoo
    build, and tells NCCL's barriers which GPU is this rank's. Torch's CUDA and process-group calls are
    recorded instead of made."""
    import datetime

    import torch
    import torch.distributed as tdist

    from robustbench_ofa.errors import RobustOFAError
    from robustbench_ofa.evaluation.distributed import from_env

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(tdist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    dist, device = from_env("cuda:0")
    assert device == "cuda:1" and (dist.rank, dist.world, dist.local_rank, dist.backend) == (3, 4, 1, "nccl")
    assert calls == [("set_device", 1), ("init", {"backend": "nccl", "timeout": datetime.timedelta(hours=2)})]
    barriers = []
    monkeypatch.setattr(tdist, "barrier", lambda **kw: barriers.append(kw))
    monkeypatch.setattr(tdist, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), [obj] * 4))
    assert dist.all_gather("row") == ["row"] * 4 and barriers == [{"device_ids": [1]}]
    monkeypatch.setenv("LOCAL_RANK", "2")  # a node with more ranks than GPUs: one line, no process group
    calls.clear()
    with pytest.raises(RobustOFAError, match=r"--device cuda:2: this machine has 2 CUDA device"):
        from_env("cuda")
    assert calls == []
