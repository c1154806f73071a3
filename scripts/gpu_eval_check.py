"""One-shot check of ``robust-ofa evaluate`` on a GPU against the same run on the CPU (issue 13, item 2).

Why: ``--precision tf32|bf16``, ``--compile`` and the sync-free input checks change only how the attacks'
passes are computed, so on the committed gate models (reports/baselines/gate-models: fixed weights, no
build) every per-sample outcome should match the CPU fp32 run up to float noise, every attacked image
should stay inside its budget, and clean predictions (always judged in fp32, eagerly) should not move at
all. One table answers that for every configuration, with the evaluation phase's seconds beside it, and
``robust-ofa regress`` of each run against the CPU run (the issue's tolerance for "``--device cuda`` equals
the CPU": same weights, so at most one flip per number and three over all, in either direction).

    python scripts/gpu_eval_check.py --json gpu_eval.json        # on a GPU machine (a few minutes)
    python scripts/gpu_eval_check.py --device cpu --configs fp32,bf16 --n-samples 8 --attack pgd --task ve \
        --eps 8/255 --sanity-steps 5                            # the CPU test's config (seconds)

Each configuration runs as its own ``python -m robustbench_ofa evaluate`` process under a time limit; one
that fails or runs out of time is a row saying so, and the script carries on. The NCCL path needs two
GPUs (two ranks may not share one), so it is not part of this one-GPU check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GATE = ROOT / "reports" / "baselines" / "gate-models"
#: name -> extra evaluate arguments (the device is added); "cpu-fp32" is the reference
CONFIGS = {
    "fp32": ["--precision", "fp32"],
    "tf32": ["--precision", "tf32"],
    "bf16": ["--precision", "bf16"],
    "bf16-compile": ["--precision", "bf16", "--compile"],
}


def _evaluate(out: Path, device: str, extra: list[str], args: argparse.Namespace,
              limit: float) -> tuple[str, float | None, str]:
    """(status, the evaluation phase's seconds or None, the last 80 lines of its output: a CUDA or compile
    error ends in boilerplate hints, so the last line alone rarely says what went wrong)."""
    cmd = [sys.executable, "-m", "robustbench_ofa", "evaluate", "--model", str(GATE / "gate-base"), "--model",
           str(GATE / "gate-finetune"), "--attack", args.attack, "--eps", args.eps, "--steps", "10",
           "--n-samples", str(args.n_samples), "--batch-size", "32", "--seed", "0", "--no-transfer",
           "--sanity-samples", "8", "--sanity-steps", str(args.sanity_steps), "--report", "", "--quiet",
           "--device", device, "--out", str(out), *extra]
    if args.task:
        cmd += ["--task", args.task]
    # prepend, not replace: a device image may put the project's pinned packages on PYTHONPATH
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return f"no result: over the {limit:.0f} s limit", None, "\n".join(err.splitlines()[-80:])
    tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-80:])
    if proc.returncode != 0:
        return f"failed: {failure_line(proc.stderr or proc.stdout)[:120]}", None, tail
    run = json.loads((out / "summary.json").read_text())["run"]
    return "ok", float(run["evaluate_seconds"]), tail


def failure_line(output: str) -> str:
    """The exception's own line (or robust-ofa's one-line error), not the hints torch prints after a
    compile error ("Set TORCHDYNAMO_VERBOSE=1 ..."), which is all the first H100 run's row said."""
    lines = output.strip().splitlines() or ["(no output)"]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b.*:|robust-ofa: error", line)]
    return (raised or lines)[-1].strip()


def _rows(out: Path) -> tuple[dict, dict, dict]:
    db = sqlite3.connect(out / "results.sqlite")
    clean = {r[:3]: r[3:] for r in db.execute("SELECT variant, task, uid, pred, correct FROM clean")}
    res = {r[:6]: r[6:] for r in db.execute("SELECT variant, task, attack, norm, eps_label, uid, status, "
                                            "adv_correct, linf, l2, eps FROM results")}
    checks = {r[:3]: r[3] for r in db.execute("SELECT variant, task, name, value FROM checks")}
    db.close()
    return clean, res, checks


def compare(ref: Path, out: Path) -> dict:
    """Clean predictions that differ; attacked outcomes that differ, over the reference's clean-correct
    rows and in each direction (a precision that makes models look robust shows as ``robust_only_here``);
    images outside budget; the large-eps (masking) check's numbers that differ."""
    rc, rr, rk = _rows(ref)
    c, r, k_ = _rows(out)
    outside = sum(1 for k, v in r.items() if (v[2] if k[3] == "linf" else v[3]) > v[4] + 1e-6)
    attacked = [k for k, v in rr.items() if v[0] != "clean-wrong"]
    here = {k: r.get(k, (None, None))[1] for k in attacked}
    numbers: dict[str, list[int]] = {}  # "variant/task/attack/norm/eps" -> [robust only here, fooled only here]
    missing = 0  # attacked in the reference, no row here
    for k in attacked:
        if here[k] is None:
            missing += 1
        elif rr[k][1] != here[k]:
            numbers.setdefault("/".join(k[:5]), [0, 0])[here[k] == 0] += 1
    robust_only, fooled_only = (sum(f[i] for f in numbers.values()) for i in (0, 1))
    return {"clean_differ": sum(rc[k] != c.get(k) for k in rc), "clean_n": len(rc),
            "numbers_differ": dict(sorted(numbers.items())),
            "outcomes_differ": robust_only + fooled_only + missing, "outcomes_n": len(attacked),
            "robust_only_here": robust_only, "fooled_only_here": fooled_only,
            "checks_differ": {"/".join(k): [v, k_.get(k)] for k, v in rk.items()
                              if k_.get(k) is None or abs(v - k_[k]) > 1e-9},
            "outside_budget": outside}


def _regress(baseline: Path, results: Path, update: bool = False) -> tuple[bool, str]:
    """``robust-ofa regress`` of ``results`` against ``baseline`` (the CPU reference's, written first with
    ``update``): the issue's tolerance for "--device cuda equals the CPU". The weights are the same, so it
    fails on more than one flip per number, or three over all, in either direction. (passed, its output)

    In this process (it reads two result stores on the CPU; a new interpreter would cost its imports for
    every configuration), unlike the evaluations, which each get their own."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from robustbench_ofa.cli import main as cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = cli(["regress", "--baseline", str(baseline), "--results", str(results), "--report", ""]
                 + (["--update"] if update else []))
    return rc == 0, out.getvalue().strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the device under test (the reference runs on cpu)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    p.add_argument("--attack", default="fgsm,pgd,pgd-margin")
    p.add_argument("--eps", default="2/255,8/255")
    p.add_argument("--task", default=None, help="default: the gate models' tasks")
    p.add_argument("--n-samples", type=int, default=96)
    p.add_argument("--sanity-steps", type=int, default=100, help="steps of the large-eps check's attacks")
    p.add_argument("--limit", type=float, default=240.0, help="seconds allowed to each evaluate run")
    p.add_argument("--total", type=float, default=500.0,
                   help="seconds allowed to the whole check (a borrowed GPU's one command may run 600 s): each run "
                        "gets at most what is left, and a configuration with under 30 s left is skipped")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        print(f"gpu_eval_check: error: --configs: unknown {unknown[0]!r}; expected some of {', '.join(CONFIGS)}",
              file=sys.stderr)
        return 2
    for flag, value in (("--limit", args.limit), ("--total", args.total)):
        if not value > 0:
            print(f"gpu_eval_check: error: {flag}: expected a positive number of seconds, got {value:g}",
                  file=sys.stderr)
            return 2
    rows = []
    deadline = time.perf_counter() + args.total
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "cpu-fp32"
        t0 = time.perf_counter()
        status, seconds, tail = _evaluate(ref, "cpu", ["--precision", "fp32"], args, min(args.limit, args.total))
        print(f"cpu fp32 (reference): {status} in {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append({"config": "cpu fp32 (reference)", "status": status, "evaluate_seconds": seconds, "log": tail})
        _save(args.json, rows)
        if seconds is None:
            print(f"gpu_eval_check: error: the CPU reference run {status}\n{tail}", file=sys.stderr)
            return 1
        baseline = Path(tmp) / "cpu-fp32.json"
        written, text = _regress(baseline, ref, update=True)
        if not written:
            print(f"gpu_eval_check: error: regress --update of the CPU reference failed\n{text}", file=sys.stderr)
            return 1
        for name in names:
            if name == "tf32" and not args.device.startswith("cuda"):
                rows.append({"config": f"{args.device} {name}", "status": "skipped: TF32 exists on CUDA only"})
                continue
            left = deadline - time.perf_counter()
            if left < 30:
                rows.append({"config": f"{args.device} {name}", "status": f"skipped: {left:.0f} s of --total left"})
                continue
            out = Path(tmp) / name
            t0 = time.perf_counter()
            status, seconds, tail = _evaluate(out, args.device, CONFIGS[name], args, min(args.limit, left))
            print(f"{args.device} {name}: {status} in {time.perf_counter() - t0:.0f} s", flush=True)
            row = {"config": f"{args.device} {name}", "status": status, "evaluate_seconds": seconds, "log": tail}
            if seconds is not None:
                row.update(compare(ref, out))
                passed, text = _regress(baseline, out)
                row["regress"] = "pass" if passed else "fail"
                row["regress_log"] = text.splitlines()[-40:]
                compiled = json.loads((out / "summary.json").read_text())["run"].get("compile")
                if compiled:  # dynamo's graphs, and functions that fell back to eager at the recompile limit
                    row["compile"] = compiled
                    if compiled["limit_reached_in"]:
                        row["status"] += f"; recompile limit reached in {len(compiled['limit_reached_in'])} function(s)"
                    if compiled["failed_in"]:
                        row["status"] += f"; compile failed in {len(compiled['failed_in'])} function(s), run eagerly"
            rows.append(row)
            _save(args.json, rows)  # after every row: a run cut short still leaves what it measured
    print("\n| config | evaluate s | clean predictions differing | attacked outcomes differing (robust only here / "
          "fooled only here) | most flips in one number | large-eps check numbers differing | outside budget | "
          "`regress` vs the CPU run | status |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        secs = "-" if r.get("evaluate_seconds") is None else f"{r['evaluate_seconds']:.1f}"
        clean = f"{r['clean_differ']} / {r['clean_n']}" if "clean_n" in r else "-"
        outc = (f"{r['outcomes_differ']} / {r['outcomes_n']} ({r['robust_only_here']} / {r['fooled_only_here']})"
                if "outcomes_n" in r else "-")
        checks = len(r["checks_differ"]) if "checks_differ" in r else "-"
        most = max((max(f) for f in r["numbers_differ"].values()), default=0) if "numbers_differ" in r else "-"
        print(f"| {r['config']} | {secs} | {clean} | {outc} | {most} | {checks} | {r.get('outside_budget', '-')} | "
              f"{r.get('regress', '-')} | {r['status']} |")
    _save(args.json, rows)
    return 0


def _save(path: Path | None, rows: list[dict]) -> None:
    if path:
        path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
