"""Print the speed ratios the issues ask for from a pytest-benchmark JSON file (same run only).

Usage: python scripts/bench_ratios.py .benchmarks/latest.json [previous.json]
With a second file, also prints each benchmark's median relative to that earlier run.
"""

from __future__ import annotations

import json
import sys

#: (label, numerator test, denominator test, multiplier of the denominator, target)
RATIOS = [
    ("PGD-10 / (10 x fwd+bwd)", "test_bench_pgd10_ours", "test_bench_fwd_bwd_once", 10, "<= 1.15"),
    ("ours PGD-10 / torchattacks.PGD-10", "test_bench_pgd10_ours_vs_stock", "test_bench_pgd10_stock_torchattacks",
     1, "<= 1.0"),
    ("SDPA / eager attention (fwd+bwd, OFA-tiny)", "test_bench_forward_backward_wrt_image[sdpa]",
     "test_bench_forward_backward_wrt_image[eager]", 1, "< 1.0"),
    ("text candidates/s: batched / one-at-a-time (time one-at-a-time / batched)",
     "test_bench_text_queries_one_at_a_time", "test_bench_text_queries_batched", 1, ">= 4"),
    ("3,129-answer scoring: one at a time / chunked over one encoder pass",
     "test_bench_answer_set_one_at_a_time", "test_bench_answer_set_chunked", 1, "> 1"),
    ("3,129-answer scoring: encoder copied per candidate / shared decoder prefix",
     "test_bench_answer_set_encoder_copies", "test_bench_answer_set_chunked", 1, "> 1"),
    ("PGD-AT step (k = 3) / ((k + 1) x plain training step)", "test_bench_train_pgd_at_steps",
     "test_bench_train_plain_steps", 4, "<= 1.15"),
    ("PGD-10 with early stopping / without (part of the batch fooled at the start)", "test_bench_pgd10_early_stop",
     "test_bench_pgd10_no_early_stop", 1, "< 1"),
    ("evaluate, whole command: 1 proc x 1 thread / torchrun 2 procs x 1 thread (aggregate throughput)",
     "test_bench_eval_1proc_1thread", "test_bench_eval_2proc_1thread", 1, ">= 1.7"),
    ("evaluate, whole command: 1 proc x default threads / torchrun 2 procs x 1 thread",
     "test_bench_eval_1proc_default_threads", "test_bench_eval_2proc_1thread", 1, "> 1"),
]
#: The same comparisons on the evaluation phase alone (``extra_info["evaluate_seconds"]``: no start-up).
PHASE_RATIOS = [
    ("evaluate phase: 1 proc x 1 thread / torchrun 2 procs x 1 thread",
     "test_bench_eval_1proc_1thread", "test_bench_eval_2proc_1thread", ">= 1.7"),
    ("evaluate phase: 1 proc x default threads / torchrun 2 procs x 1 thread",
     "test_bench_eval_1proc_default_threads", "test_bench_eval_2proc_1thread", "> 1"),
]


def medians(path: str) -> dict[str, float]:
    data = json.load(open(path))
    return {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}


def extras(path: str) -> dict[str, dict]:
    data = json.load(open(path))
    return {b["name"]: b.get("extra_info") or {} for b in data["benchmarks"]}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cur = medians(argv[0])
    for label, num, den, mult, target in RATIOS:
        if num in cur and den in cur:
            print(f"{label}: {cur[num] / (mult * cur[den]):.3f}  (target {target})")
    info = extras(argv[0])
    for label, num, den, target in PHASE_RATIOS:
        a, b = info.get(num, {}).get("evaluate_seconds"), info.get(den, {}).get("evaluate_seconds")
        if a and b:
            print(f"{label}: {a / b:.3f}  (target {target}; {a:.1f} s vs {b:.1f} s)")
    dist = info.get("test_bench_eval_2proc_1thread", {})
    if "wait_share" in dist:
        print(f"torchrun 2 procs, evaluate phase: gathering rows (all ranks arrived) / phase, worst rank: "
              f"{dist['gather_share']:.3f}  (target <= 0.05; seconds per rank {dist['gather_seconds']})")
        print(f"torchrun 2 procs, evaluate phase: waiting for the slower rank (load imbalance) / phase, worst "
              f"rank: {dist['wait_share']:.3f}  (seconds per rank {dist['wait_seconds']})")
    if len(argv) > 1:
        prev = medians(argv[1])
        for name in sorted(set(cur) & set(prev)):
            print(f"{name}: {cur[name] / prev[name]:.3f} x previous run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
