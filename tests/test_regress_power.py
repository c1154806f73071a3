"""The stated power of the regression gates matches a simulation of the gates themselves.

For each test the smallest drop detected with 80 % probability (``power_table`` and the functions behind
it) is checked against Monte-Carlo runs of the very decision the gate makes: the change model is the
documented one (each baseline-correct sample lost with probability (r n / 2 + drop n) / k, each
baseline-wrong one gained with probability (r n / 2) / (n - k)).
"""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_ofa.regress import (
    aggregate_power,
    count_power,
    count_threshold,
    encode_samples,
    gate,
    paired_drop,
    paired_power,
    power_table,
    sign_flip_lower,
    smallest_drop,
)
from robustbench_ofa.stats import two_proportion_test

N = 96


def _simulate_flips(rng, k: int, n: int, drop: float, r: float, size: int):
    q_lost = min(1.0, (r * n / 2 + drop * n) / k)
    q_gain = r * n / 2 / (n - k)
    return rng.binomial(k, q_lost, size), rng.binomial(n - k, q_gain, size)


@pytest.mark.parametrize("k,r", [(83, 0.04), (52, 0.08)])
def test_paired_power_matches_simulation_of_the_gate(k, r):
    """One regressed number among m = 36: Holm's first step, threshold alpha / 2 / m."""
    thr = 0.05 / 2 / 36
    drop = paired_drop(k, N, thr, r, None)
    assert drop is not None and 0.1 < drop < 0.3
    expected = paired_power(k, N, drop, thr, r)
    assert expected >= 0.8 and paired_power(k, N, drop - 0.002, thr, r) < 0.8
    # simulate the number inside a 36-number gate: the 35 others unchanged but noisy (r), the one dropped
    rng = np.random.default_rng(0)
    sims, hits = 300, 0
    for _ in range(sims):
        base, run = {}, {}
        for j in range(36):
            kk = k if j == 0 else 72
            b, c = _simulate_flips(rng, kk, N, drop if j == 0 else 0.0, r, 1)
            key = f"v{j}|ve|clean"
            uids = [f"s{i}" for i in range(N)]
            base[key] = {u: i < kk for i, u in enumerate(uids)}
            lost = set(rng.choice(kk, b[0], replace=False))
            gained = set(kk + rng.choice(N - kk, c[0], replace=False))
            run[key] = {u: (i < kk and i not in lost) or i in gained for i, u in enumerate(uids)}
        docs = [{"settings": {}, "weights": {f"v{j}": {"m": w} for j in range(36)},
                 "numbers": {kk: [sum(d.values()), N] for kk, d in flags.items()},
                 "samples": encode_samples(flags)} for flags, w in ((base, "a"), (run, "b"))]
        g = gate(*docs)
        hits += next(row.status for row in g.rows if row.key == "v0|ve|clean") == "REGRESSION"
    assert abs(hits / sims - expected) < 0.08, (hits / sims, expected)


def test_count_power_matches_simulation():
    k = 60
    drop = smallest_drop(lambda d: count_power(k, N, N, d), k / N)
    expected = count_power(k, N, N, drop)
    rng = np.random.default_rng(1)
    new = rng.binomial(N, k / N - drop, 4000)
    sim = np.mean([(x < k) and two_proportion_test(k, N, int(x), N) < 0.05 for x in new])
    assert abs(sim - expected) < 0.03
    # on the same weights (no noise) the count gate is a threshold: the 11.5 to 14.6 points
    assert 100 * count_threshold(83, N, N) == pytest.approx(11.5, abs=0.05)
    assert 100 * count_threshold(52, N, N) == pytest.approx(14.6, abs=0.05)
    assert count_power(83, N, N, 0.115, discordance=0.0) < 0.8  # losses vary: 80 % needs more than that


def test_aggregate_power_matches_simulation_of_the_sign_flip_test():
    """36 numbers, uniform drop, one sample cluster per (task, uid): 12 numbers share each task's samples."""
    counts = [(72, N)] * 36
    r = 0.05
    drop = smallest_drop(lambda d: aggregate_power(counts, d, 0.025, r), 0.5)
    assert drop is not None and drop < 0.03
    expected = aggregate_power(counts, drop, 0.025, r)
    rng = np.random.default_rng(2)
    sims, hits = 300, 0
    for _ in range(sims):
        net = np.zeros((3, N), dtype=int)
        for j in range(36):
            b, c = _simulate_flips(rng, 72, N, drop, r, 1)
            task = j % 3
            perm = rng.permutation(N)  # which samples this number's flips hit
            net[task, perm[: b[0]]] -= 1
            net[task, perm[b[0]: b[0] + c[0]]] += 1
        hits += sign_flip_lower(net.ravel().tolist()) < 0.025
    assert abs(hits / sims - expected) < 0.08, (hits / sims, expected)


def test_power_table_states_every_number_and_the_aggregates():
    flags = {f"v|ve|{t}": {f"s{i}": i < 70 for i in range(N)} for t in ("clean", "linf|2/255")}
    doc = {"settings": {}, "weights": {"v": {"m": "a"}}, "numbers": {k: [70, N] for k in flags},
           "samples": encode_samples(flags)}
    lines = power_table(gate(doc, doc))
    assert [p.mode for p in lines] == ["fixed", "fixed", "fixed"]
    assert lines[0].drop == pytest.approx(2 / N) and lines[-1].key.startswith("ALL")
    other = {**doc, "weights": {"v": {"m": "b"}}}
    lines = power_table(gate(doc, other), discordance=0.05)
    assert [p.mode for p in lines] == ["paired", "paired", "paired"]
    assert lines[0].drop == pytest.approx(paired_drop(70, N, 0.025 / 2, 0.05, None))
    old = {"settings": {}, "numbers": doc["numbers"]}
    lines = power_table(gate(old, old))
    assert lines[0].mode == "count" and lines[-1].key.startswith("ALL")
