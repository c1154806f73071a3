"""The paired regression gate on synthetic per-sample data (no model): which test fires for what change.

Issue 16's cases: on fixed weights six samples of one number turned wrong fail the per-sample gate while
the old count gate passes them; on a retrained model a uniform 2-point drop across all numbers fails the
aggregate test although no single number is significant; an unchanged model passes; symmetric flips of
float-noise size pass; count-only baselines still load and get the old test.
"""

from __future__ import annotations

import json
import random

import pytest

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.regress import (
    FORMAT,
    FORMAT_V1,
    decode_bits,
    encode_bits,
    encode_samples,
    gate,
    holm,
    mcnemar_lower,
    per_sample,
    read_baseline,
    sign_flip_lower,
)
from robustbench_ofa.stats import mcnemar

VARIANTS = ["v1", "v2", "v3", "v4", "v5", "v6"]
TASKS = ["grounding", "ve", "vqa"]
N = 96


def _uids(task: str) -> list[str]:
    return [f"{task}-{i:03d}" for i in range(N)]


def _keys() -> list[str]:
    return [f"{v}|{t}|{n}" for v in VARIANTS for t in TASKS for n in ("clean", "linf|2/255")]


def _doc(flags: dict[str, dict[str, bool]], weights: dict[str, str]) -> dict:
    return {"format": FORMAT, "settings": {}, "provenance": {},
            "weights": {v: {"model": h} for v, h in weights.items()},
            "numbers": {k: [sum(d.values()), len(d)] for k, d in flags.items()}, "samples": encode_samples(flags)}


def _baseline_flags(seed: int = 0, acc: float = 0.75) -> dict[str, dict[str, bool]]:
    rng = random.Random(seed)
    return {k: {u: rng.random() < acc for u in _uids(k.split("|")[1])} for k in _keys()}


def _flip(flags: dict[str, bool], lose: int, gain: int, rng: random.Random) -> dict[str, bool]:
    out = dict(flags)
    right = sorted(u for u, ok in flags.items() if ok)
    wrong = sorted(u for u, ok in flags.items() if not ok)
    for u in rng.sample(right, lose):
        out[u] = False
    for u in rng.sample(wrong, gain):
        out[u] = True
    return out


SAME = {v: "aaaa" for v in VARIANTS}
OTHER = {v: "bbbb" for v in VARIANTS}


def _status(g, key: str) -> str:
    return next(r.status for r in g.rows if r.key == key)


def test_bits_round_trip_and_layout():
    bits = [True, False, False, False, False, True, True, True, True]
    assert encode_bits(bits) == "87" + "8"
    assert decode_bits(encode_bits(bits), len(bits)) == bits
    with pytest.raises(ValueError):
        decode_bits("zz", 8)
    flags = {"a|ve|clean": {"x": True, "y": False}, "a|ve|linf|2/255": {"x": False}}
    block = encode_samples(flags)
    assert block["uids"] == {"ve": ["x", "y"]} and block["present"] == {"a|ve|linf|2/255": "8"}
    assert per_sample({"samples": block}) == flags


def test_fixed_weights_six_flips_fail_while_the_count_gate_passes_them():
    """Issue 16's example: 60/96 -> 54/96 on the same weights (-6.2 points)."""
    key = "v1|vqa|linf|2/255"
    rng = random.Random(1)
    base = _baseline_flags()
    base[key] = {u: i < 60 for i, u in enumerate(_uids("vqa"))}
    run = dict(base)
    run[key] = _flip(base[key], 6, 0, rng)
    g = gate(_doc(base, SAME), _doc(run, SAME))
    row = next(r for r in g.rows if r.key == key)
    assert (row.mode, row.lost, row.gained, row.status) == ("fixed", 6, 0, "REGRESSION")
    assert len(row.lost_uids) == 6 and g.failed
    assert all(r.status == "ok" for r in g.rows if r.key != key)
    # the old count-only gate on the very same numbers: p = 0.378, "ok"
    old = {"format": FORMAT_V1, "settings": {}, "numbers": _doc(base, SAME)["numbers"]}
    new = {"format": FORMAT_V1, "settings": {}, "numbers": _doc(run, SAME)["numbers"]}
    g_old = gate(old, new)
    row_old = next(r for r in g_old.rows if r.key == key)
    assert row_old.mode == "count" and row_old.status == "ok" and abs(row_old.p_value - 0.378) < 1e-3
    assert not g_old.failed and "count-only baseline" in g_old.notes[0]


def test_symmetric_float_noise_flips_pass_on_fixed_weights():
    rng = random.Random(2)
    base = _baseline_flags()
    run = dict(base)
    for key in _keys()[:3]:  # one sample each way in three numbers: 3 flips to wrong in all
        run[key] = _flip(base[key], 1, 1, rng)
    g = gate(_doc(base, SAME), _doc(run, SAME))
    assert not g.failed and all(r.status == "ok" for r in g.rows)
    assert g.aggregates[0].lost == 3 and g.aggregates[0].status == "ok"
    # one more flip to wrong anywhere exceeds the total allowance; --exact allows none
    run[_keys()[4]] = _flip(base[_keys()[4]], 1, 0, rng)
    assert gate(_doc(base, SAME), _doc(run, SAME)).aggregates[0].status == "REGRESSION"
    assert gate(_doc(base, SAME), _doc(base, SAME), exact=True).failed is False


def test_fixed_weights_numbers_that_rise_fail_as_changed():
    """On the same weights a rise is a weaker attack or a more lenient metric, not a better model."""
    key = "v2|grounding|linf|2/255"
    base = _baseline_flags()
    run = dict(base)
    run[key] = _flip(base[key], 0, 5, random.Random(7))
    g = gate(_doc(base, SAME), _doc(run, SAME))
    assert next(r.status for r in g.rows if r.key == key) == "CHANGED" and g.failed
    assert g.aggregates[0].status == "CHANGED"
    # the same rise on a retrained model is an improvement, and passes
    g = gate(_doc(base, SAME), _doc(run, OTHER))
    assert next(r.status for r in g.rows if r.key == key) in ("ok", "improvement") and not g.failed


def test_unchanged_model_passes_fixed_and_retrained():
    base = _baseline_flags()
    assert not gate(_doc(base, SAME), _doc(base, SAME)).failed
    # a retrained model of the same quality: three samples each way in every number
    rng = random.Random(3)
    run = {k: _flip(d, 3, 3, rng) for k, d in base.items()}
    g = gate(_doc(base, SAME), _doc(run, OTHER))
    assert {r.mode for r in g.rows} == {"paired"} and not g.failed
    assert g.aggregates[0].mode == "paired" and g.aggregates[0].p_value > 0.4


def test_retrained_uniform_two_point_drop_fails_the_aggregate_only():
    base = _baseline_flags()
    rng = random.Random(4)
    run = {k: _flip(d, 2 + 2, 2, rng) for k, d in base.items()}  # 2 extra losses of 96: -2.1 points each
    g = gate(_doc(base, SAME), _doc(run, OTHER))
    assert all(r.status == "ok" for r in g.rows)  # McNemar 4 vs 2 is nowhere near significant alone
    agg = g.aggregates[0]
    assert (agg.lost, agg.gained) == (144, 72) and agg.p_value < 1e-4 and agg.status == "REGRESSION"
    assert g.failed
    # a tolerance of 3 points lets the 2-point drop through; 8 points per number but only 1.6 in the mean
    # (--aggregate-tolerance) still fails the aggregate
    assert not gate(_doc(base, SAME), _doc(run, OTHER), tolerance=0.03).failed
    g = gate(_doc(base, SAME), _doc(run, OTHER), tolerance=0.08, aggregate_tolerance=0.016)
    assert g.failed and g.aggregates[0].status == "REGRESSION" and "mean drop > 0.016" in g.aggregates[0].rule
    assert all(r.status == "ok" for r in g.rows)


def test_retrained_large_drop_in_one_number_fails_it_after_holm():
    base = _baseline_flags()
    key = "v3|ve|clean"
    run = dict(base)
    run[key] = _flip(base[key], 14, 1, random.Random(5))
    g = gate(_doc(base, SAME), _doc(run, OTHER))
    row = next(r for r in g.rows if r.key == key)
    assert row.status == "REGRESSION" and row.p_adjusted == pytest.approx(36 * mcnemar_lower(14, 1))
    assert [r.key for r in g.rows if r.status != "ok"] == [key]


def test_exact_tests_by_hand():
    # one-sided exact McNemar: P(X >= 6 | 6 + 0) = 1/64; half of the two-sided helper's value
    assert mcnemar_lower(6, 0) == pytest.approx(1 / 64)
    assert mcnemar_lower(6, 2) == pytest.approx(mcnemar(6, 2) / 2)
    assert mcnemar_lower(0, 0) == 1.0
    # Holm: sorted p 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # the sign-flip test is the sign test when every sample moved in one number: P(X <= 1), X ~ Bin(6, 1/2)
    assert sign_flip_lower([-1, -1, -1, -1, -1, 1]) == pytest.approx(7 / 64)
    # net -2 from one sample moving in two numbers: P(2e1 + e2 <= -2) = P(e1 = -1) = 1/2
    assert sign_flip_lower([-2, 1]) == pytest.approx(0.5)


def test_baselines_are_checked_on_load(tmp_path):
    base = _baseline_flags()
    doc = _doc(base, SAME)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    assert read_baseline(path)["numbers"] == doc["numbers"]
    key = _keys()[0]
    doc["numbers"][key] = [doc["numbers"][key][0] + 1, N]
    path.write_text(json.dumps(doc))
    with pytest.raises(RobustOFAError, match="does not match its count"):
        read_baseline(path)
    old = {"format": FORMAT_V1, "settings": {}, "numbers": {key: [70, 96]}}
    path.write_text(json.dumps(old))
    assert read_baseline(path)["format"] == FORMAT_V1
    path.write_text(json.dumps({**old, "format": "robust-ofa-baseline/9"}))
    with pytest.raises(RobustOFAError, match="field 'format'"):
        read_baseline(path)
