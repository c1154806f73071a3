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
]


def medians(path: str) -> dict[str, float]:
    data = json.load(open(path))
    return {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cur = medians(argv[0])
    for label, num, den, mult, target in RATIOS:
        if num in cur and den in cur:
            print(f"{label}: {cur[num] / (mult * cur[den]):.3f}  (target {target})")
    if len(argv) > 1:
        prev = medians(argv[1])
        for name in sorted(set(cur) & set(prev)):
            print(f"{name}: {cur[name] / prev[name]:.3f} x previous run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
