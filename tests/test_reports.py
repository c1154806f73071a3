"""Reports: headline sentences from numbers, rendering in a real browser and as PDF pages, escaping, CLI errors.

The browser and PDF checks need ``chromium`` and ``pdftoppm`` (``scripts/install_test_system_deps.sh``
installs them). Without them the tests fail with a line naming that script.
"""

from __future__ import annotations

import copy
import html as htmlmod
import json
import math
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import colour_samples
from PIL import Image

from attacks import AttackParams
from reports.headline import Comparison, fmt_p, fmt_points, paired_diff_ci
from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation import aggregate as agg
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.outputs import compute, write_aggregates
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.stats import mcnemar

HOSTILE = "<script>document.title='pwned'</script>"
HOSTILE_ATTR = "\"><img src=x onerror=\"document.title='pwned2'\">"
REF = "finetune"
OTHER = "prompt " + HOSTILE


# -- tools -------------------------------------------------------------------------------------------
def _tool(*names: str) -> str:
    """Path of the first program found; its absence is a missing set-up step, so the test fails."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{names[0]} not installed (run scripts/install_test_system_deps.sh)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Checked before the (slower) results fixture, so a missing browser fails at once."""
    return _tool("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="session")
def poppler() -> dict[str, str]:
    return {"pdftoppm": _tool("pdftoppm"), "pdftotext": _tool("pdftotext")}


def _chromium(exe: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


# -- a small real results store ----------------------------------------------------------------------
def _damaged(model: torch.nn.Module) -> torch.nn.Module:
    """A second, weaker variant: the trained model with noise on its weights (no second training run)."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.06 * (p.abs().mean() + 1e-3))
    return other.eval()


@pytest.fixture(scope="module")
def results_dir(colour_model, tmp_path_factory) -> Path:
    model, task = colour_model
    samples = colour_samples(16, 21)
    samples[0].text = HOSTILE_ATTR + " what color is the shape?"
    samples[1].text = HOSTILE + " what color is the shape?"
    out = tmp_path_factory.mktemp("report-run")
    cfg = EvalConfig(attacks=["pgd"], tasks=["vqa"], eps=parse_eps_list("8/255,48/255"), n_samples=16,
                     batch_size=16, params=AttackParams(steps=3), beam=1, transfer_samples=8, sanity_samples=2,
                     n_examples=2)
    store = ResultsStore(out / "results.sqlite")
    store.bind(cfg.settings())
    models = {REF: model, OTHER: _damaged(model)}
    ev = Evaluator(cfg, store, lambda n: LoadedVariant(n, models[n], task.tokenizer, 32),
                   lambda t, n: samples[:n], progress=False)
    ev.run(list(models))
    store.add_samples((s.task, s.uid, s.text, s.label, s.image.width, s.image.height) for s in samples)
    # a text-attack example: the runner stores the adversarial sentence as kind='text'
    store.add_results([], [(OTHER, "vqa", "pgd", "8/255", samples[2].uid, "text", None,
                            "what colour is teh shape?")])
    variants = [{"name": REF, "method": "finetune", "trainable_params": sum(p.numel() for p in model.parameters()),
                 "hparams": {}, "sha256": "0123456789abcdef" * 4},
                {"name": OTHER, "method": "prompt", "trainable_params": 1024, "hparams": {"length": 16},
                 "sha256": "fedcba9876543210" * 4}]
    run = {"command": "robust-ofa evaluate --attack pgd", "device": "cpu", "seconds": 12.5,
           "versions": {"torch": torch.__version__}}
    store.set_meta("run", run)
    store.set_meta("variants", variants)
    store.set_meta("complete", True)
    write_aggregates(store, out, run)
    store.close()
    pd.DataFrame({"method": ["prompt"] * 4, "length": [4, 16, 4, 16], "depth": ["encoder", "encoder", "both", "both"],
                  "trainable_params": [256, 1024, 512, 2048], "vqa_acc": [0.6, 0.7, 0.65, 0.8]}
                 ).to_csv(out / "ablation.csv", index=False)
    return out


@pytest.fixture(scope="module")
def rendered(results_dir) -> dict[str, Path]:
    from robustbench_ofa.commands.report import write_reports

    paths = write_reports(results_dir, formats=("html", "pdf", "md", "tex"))
    return {p.suffix.lstrip("."): p for p in paths}


# -- headline sentences --------------------------------------------------------------------------------
def _paired_row(only_a: int, only_b: int, both: int, neither: int, a: str = "A", b: str = "B") -> dict:
    """A paired-test row computed by the aggregation code from synthetic per-sample results."""
    rows, clean = [], []
    spec = [(1, 1)] * both + [(1, 0)] * only_a + [(0, 1)] * only_b + [(0, 0)] * neither
    for i, (ok_a, ok_b) in enumerate(spec):
        for variant, ok in ((a, ok_a), (b, ok_b)):
            clean.append(dict(variant=variant, task="vqa", uid=f"u{i}", correct=1))
            rows.append(dict(variant=variant, task="vqa", norm="linf", eps_label="4/255", eps=4 / 255, attack="pgd",
                             uid=f"u{i}", status="attacked", clean_correct=1, adv_correct=ok))
    paired = agg.paired_tests(pd.DataFrame(rows), pd.DataFrame(clean))
    return paired[paired.norm == "linf"].iloc[0].to_dict()


SENTENCE = re.compile(r"^(?P<winner>.+) is more robust than (?P<loser>.+) under PGD at 4/255: "
                      r"\+(?P<pts>[\d.]+) points \(95% CI (?P<lo>[+\u2212][\d.]+|0\.0) to (?P<hi>[+\u2212][\d.]+|0\.0)\), "
                      r"p (?P<p>[<=] [\d.]+)\.$")
NS = re.compile(r"^No significant difference between (?P<s>.+) and (?P<r>.+) under PGD at 4/255: "
                r"(?P<pts>[+\u2212]?[\d.]+) points for (?P=s) \(95% CI (?P<lo>\S+) to (?P<hi>\S+)\), p (?P<p>[<=] [\d.]+)\.$")


def _num(text: str) -> float:
    return float(text.replace("\u2212", "-"))


@pytest.mark.parametrize("only_a,only_b,both,neither,verdict", [
    (30, 5, 40, 25, "better"),   # A clearly more robust
    (2, 19, 50, 29, "worse"),    # A clearly less robust
    (9, 6, 60, 25, "ns"),        # a small difference, not significant
    (0, 0, 70, 30, "ns"),        # identical answers
    (7, 0, 3, 0, "better"),      # tiny n, all discordant pairs one way: p = 0.016
])
def test_headline_sentence_matches_the_numbers(only_a, only_b, both, neither, verdict):
    row = _paired_row(only_a, only_b, both, neither)
    c = Comparison.from_paired(row, "A", "PGD at 4/255")
    n = only_a + only_b + both + neither
    diff = (only_a - only_b) / n
    p = mcnemar(only_a, only_b)
    lo, hi = paired_diff_ci(both, only_a, only_b, neither)
    assert c.verdict == verdict
    assert math.isclose(c.diff, diff) and math.isclose(c.p_value, p)
    sentence = c.sentence()
    if verdict == "ns":
        m = NS.match(sentence)
        assert m, sentence
        assert (m["s"], m["r"]) == ("A", "B")
        assert _num(m["pts"]) == round(100 * diff, 1)
        assert (_num(m["lo"]), _num(m["hi"])) == (round(100 * lo, 1), round(100 * hi, 1))
        assert p >= 0.05
    else:
        m = SENTENCE.match(sentence)
        assert m, sentence
        assert (m["winner"], m["loser"]) == (("A", "B") if verdict == "better" else ("B", "A"))
        assert float(m["pts"]) == round(100 * abs(diff), 1)
        sign = 1 if verdict == "better" else -1
        lo_w, hi_w = sorted((sign * lo, sign * hi))
        assert (_num(m["lo"]), _num(m["hi"])) == (round(100 * lo_w, 1), round(100 * hi_w, 1))
        assert 0 < lo_w <= abs(diff) <= hi_w
        assert p < 0.05
    assert ("p " + m["p"]) == fmt_p(p)
    # the other orientation tells the same story
    flipped = Comparison.from_paired(row, "B", "PGD at 4/255")
    assert flipped.verdict == {"better": "worse", "worse": "better", "ns": "ns"}[verdict]
    if verdict != "ns":
        assert flipped.sentence() == sentence


def test_clean_sentence_and_number_formats():
    c = Comparison("vqa", "clean", "P", "F", both=50, only_subject=20, only_reference=2, neither=28, p_value=1e-5)
    assert c.sentence().startswith("P is more accurate than F on clean inputs: +18.0 points")
    assert c.sentence().endswith("p < 0.001.")
    assert fmt_points(-0.1234) == "\u221212.3" and fmt_points(0.0004) == "0.0"
    assert fmt_p(0.0021) == "p = 0.002" and fmt_p(0.41) == "p = 0.41" and fmt_p(1.0) == "p = 1"


def test_paired_interval_behaves():
    lo, hi = paired_diff_ci(50, 0, 0, 50)
    assert lo < 0 < hi and math.isclose(lo, -hi)  # no discordant pairs: still a real interval
    lo, hi = paired_diff_ci(10, 10, 0, 0)
    assert -1 <= lo < 0.5 < hi <= 1
    a = paired_diff_ci(300, 120, 80, 500)
    b = paired_diff_ci(300, 80, 120, 500)
    assert math.isclose(a[0], -b[1]) and math.isclose(a[1], -b[0])  # swapping A and B mirrors it
    n, k1, k2 = 1000, 120, 80  # large n: close to the paired Wald interval
    d = (k1 - k2) / n
    se = math.sqrt((k1 + k2) - (k1 - k2) ** 2 / n) / n
    assert abs(a[0] - (d - 1.96 * se)) < 0.005 and abs(a[1] - (d + 1.96 * se)) < 0.005
    assert paired_diff_ci(0, 0, 0, 0) == (-1.0, 1.0)


# -- rendered formats ----------------------------------------------------------------------------------
def test_all_formats_are_written(rendered, results_dir):
    assert set(rendered) == {"html", "pdf", "md", "tex"}
    tables = compute(ResultsStore(results_dir / "results.sqlite"))
    md = rendered["md"].read_text()
    tex = rendered["tex"].read_text()
    assert "## Headline" in md and "\\<script\\>" in md and "<script>" not in md
    assert "\\toprule" in tex and "\\textless{}script\\textgreater{}" in tex and "<script>" not in tex
    w = tables["worst_case"]
    for r in w.itertuples():
        assert f"{100 * r.robust_acc:.1f}" in md
    page = rendered["html"].read_text()
    assert page.count("<script>") == 1  # ours only; the hostile strings are escaped
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
    assert 'onerror="document' not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: nothing fetched
    assert page.count("data:image/png;base64,") >= 4  # plots and examples embedded
    assert "fig-ablation" in page and "fig-params-vs-robust" in page and "fig-transfer" in page
    assert "colour" in page and "<mark>teh</mark>" in page  # the text perturbation, changed words marked


def test_html_in_headless_chromium(chromium, rendered, results_dir, tmp_path):
    page = rendered["html"]
    tables = compute(ResultsStore(results_dir / "results.sqlite"))
    shot = tmp_path / "shot.png"
    res = _chromium(chromium, tmp_path, "--window-size=1366,900", f"--screenshot={shot}", page.resolve().as_uri())
    assert shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (900, 1366) and img.std() > 10  # something is drawn
    assert not _console_errors(res.stderr), _console_errors(res.stderr)

    res = _chromium(chromium, tmp_path, "--dump-dom", page.resolve().as_uri())
    dom = res.stdout
    assert not _console_errors(res.stderr), _console_errors(res.stderr)
    title = re.search(r"<title>(.*?)</title>", dom).group(1)
    assert title == f"Robustness report: {results_dir.name}"  # the hostile scripts did not run
    assert "pwned" not in title
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # shown as text
    text = htmlmod.unescape(re.sub(r"<[^>]+>", " ", dom))
    for r in tables["worst_case"].itertuples():
        assert f"{100 * r.robust_acc:.1f}" in text
    for r in tables["paired"].itertuples():
        assert fmt_points(r.diff) in text
    headline = [c.sentence() for c in _report(results_dir).headline["vqa"]]
    assert headline and all(s in text for s in headline)


SORT_DRIVER = """<script>
(function () {
  var t = document.querySelector('table[data-table="worst-case"]');
  var heads = t.tHead.rows[0].cells, col = -1;
  for (var i = 0; i < heads.length; i++) if (heads[i].textContent.indexOf("Robust acc") === 0) col = i;
  function values() { return Array.prototype.map.call(t.tBodies[0].rows, function (r) {
    return parseFloat(r.cells[col].getAttribute("data-sort")); }); }
  heads[col].click(); var asc = values(), a1 = heads[col].getAttribute("aria-sort");
  heads[col].click(); var desc = values(), a2 = heads[col].getAttribute("aria-sort");
  var pre = document.createElement("pre"); pre.id = "sort-result";
  pre.textContent = JSON.stringify({asc: asc, desc: desc, aria: [a1, a2]});
  document.body.appendChild(pre);
})();
</script></body>"""


def test_tables_sort_in_the_browser(chromium, rendered, tmp_path):
    page = tmp_path / "driven.html"
    page.write_text(rendered["html"].read_text().replace("</body>", SORT_DRIVER))
    res = _chromium(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert not _console_errors(res.stderr), _console_errors(res.stderr)
    m = re.search(r'<pre id="sort-result">(.*?)</pre>', res.stdout, re.S)
    assert m, res.stdout[-2000:]
    got = json.loads(htmlmod.unescape(m.group(1)))
    assert got["aria"] == ["ascending", "descending"]
    assert got["asc"] == sorted(got["asc"]) and got["desc"] == sorted(got["desc"], reverse=True)
    assert len(got["asc"]) >= 4


def test_pdf_pages_are_numbered_and_none_is_blank_or_cut(poppler, rendered, tmp_path):
    pdftoppm, pdftotext = poppler["pdftoppm"], poppler["pdftotext"]
    subprocess.run([pdftoppm, "-r", "40", "-png", str(rendered["pdf"]), str(tmp_path / "page")], check=True,
                   timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    text = subprocess.run([pdftotext, "-layout", str(rendered["pdf"]), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    per_page = [t for t in text.split("\f") if t.strip()]
    assert 2 <= len(pages) == len(per_page) <= 20
    for i, t in enumerate(per_page, 1):
        assert f"Page {i} of {len(pages)}" in t
    for heading in ("Headline", "Results tables", "Plots", "Examples", "Run metadata", "Methods and notes"):
        assert heading in text
    for path in pages:
        img = np.asarray(Image.open(path).convert("L"), dtype=float)
        h, w = img.shape
        body = img[int(0.08 * h): int(0.92 * h), :]
        assert (body < 200).mean() > 0.01, f"{path.name} is blank"
        margin = int(0.045 * w)  # A4 side margins are 13 mm (6 % of the width): nothing may reach them
        assert (img[:, :margin] > 250).all() and (img[:, -margin:] > 250).all(), f"{path.name}: content cut at the edge"


def _report(results_dir, **kw):
    from reports.build import load_report

    return load_report(results_dir, with_figures=False, **kw)


def test_report_model_from_store(results_dir):
    r = _report(results_dir)
    assert r.reference == REF and r.variants == [REF, OTHER] and r.complete
    assert [t.short for t in r.threats["vqa"]] == ["clean", "L∞ 8/255", "L∞ 48/255"]
    comps = r.comparisons["vqa"]
    assert {c.subject for c in comps} == {OTHER} and len(comps) == 3
    paired = r.tables["paired"]
    assert sorted(round(abs(c.diff), 9) for c in comps) == sorted(round(abs(d), 9) for d in paired["diff"])
    assert any(k == "command" for k, _ in r.metadata)
    assert r.examples and all(e.clean_uri.startswith("data:image/png") for e in r.examples)
    assert r.text_examples and [w for w, ch in r.text_examples[0].after if ch] == ["colour", "teh"]
    r2 = _report(results_dir, reference=OTHER)
    assert r2.reference == OTHER
    with pytest.raises(RobustOFAError, match="--reference: no variant 'nope'"):
        _report(results_dir, reference="nope")


def test_long_variant_names_leave_the_transfer_matrix_room(results_dir):
    """A long name (a checkpoint path's folder, here the hostile one) made tight_layout give up with a
    UserWarning on every report; tick labels are now cut in the middle, unique, and the caption says so."""
    import warnings

    from reports.plots import elide, transfer_heatmap

    long = ["ofa-base-refcoco-prompt-64-encdec-seed3", "ofa-base-refcoco-prompt-64-encdec-seed4", "ft"]
    short = elide(long)
    assert len(set(short.values())) == 3 and all(len(t) <= 22 for t in short.values()) and short["ft"] == "ft"
    assert short[long[0]].endswith("seed3") and "\u2026" in short[long[0]]
    twins = ["a" * 20 + "1" + "b" * 20, "a" * 20 + "2" + "b" * 20]  # differ only in the middle: kept whole
    assert elide(twins) == {n: n for n in twins}
    r = _report(results_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = transfer_heatmap(r)
    assert fig is not None and "shortened in the middle" in fig.caption


def test_params_plot_skipped_without_metadata(results_dir, tmp_path):
    from reports.build import load_report

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(results_dir / "results.sqlite", run / "results.sqlite")
    db = sqlite3.connect(run / "results.sqlite")
    with db:
        db.execute("DELETE FROM meta WHERE key IN ('variants', 'run')")
        db.execute("DROP TABLE samples")
    db.close()
    r = load_report(run)
    assert "params-vs-robust" not in {f.key for f in r.figures}
    assert any("Trainable parameters vs robustness: skipped" in n for n in r.notes)
    assert r.examples and not r.examples[0].text  # no samples table: examples still shown, without texts


# -- the command -----------------------------------------------------------------------------------------
def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(["report", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_refuses_bad_input_with_one_line(results_dir, tmp_path, capsys):
    code, err = _cli(capsys, str(tmp_path / "missing"))
    assert code == 2 and "no such results directory" in err and len(err.splitlines()) == 1
    code, err = _cli(capsys, str(tmp_path))
    assert code == 2 and "no results.sqlite here" in err
    inc = tmp_path / "incomplete"
    inc.mkdir()
    shutil.copy(results_dir / "results.sqlite", inc / "results.sqlite")
    store = ResultsStore(inc / "results.sqlite")
    store.set_meta("complete", False)
    store.close()
    code, err = _cli(capsys, str(inc))
    assert code == 2 and "incomplete" in err and "--allow-incomplete" in err and len(err.splitlines()) == 1
    code, err = _cli(capsys, str(inc), "--format", "html,docx")
    assert code == 2 and "unknown report format 'docx'" in err
    code, _ = _cli(capsys, str(inc), "--allow-incomplete", "--format", "html,md", "--out", str(tmp_path / "o"))
    assert code == 0
    page = (tmp_path / "o" / "report.html").read_text()
    assert 'id="incomplete-banner"' in page and "INCOMPLETE RUN" in page
    assert "INCOMPLETE RUN" in (tmp_path / "o" / "report.md").read_text()


def test_pdf_without_weasyprint_is_a_one_line_error(results_dir, tmp_path, monkeypatch):
    from robustbench_ofa.commands.report import write_reports

    monkeypatch.setitem(sys.modules, "weasyprint", None)
    with pytest.raises(RobustOFAError, match=r"weasyprint is not installed; pip install"):
        write_reports(results_dir, formats="html,pdf", out=tmp_path)
    assert (tmp_path / "report.html").exists()  # the other formats are written first


def test_grounding_boxes_are_drawn():
    import io

    from reports.examples import ADV_COLOUR, CLEAN_COLOUR, REF_COLOUR, _image_example

    def png(value: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    row = pd.Series(dict(variant="v", task="grounding", uid="u", attack="pgd", eps_label="4/255", norm="linf",
                         clean_correct=1, adv_correct=0, clean_pred="(0.0, 0.0, 32.0, 32.0)",
                         adv_pred="(8.0, 8.0, 16.0, 16.0)", png=png(90)))
    ex = _image_example(row, png(80), {"text": "the red ball", "reference": "[0, 0, 64, 64]", "width": 64,
                                       "height": 64})
    import base64

    def colours(uri: str) -> set:
        im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        return set(map(tuple, np.asarray(im).reshape(-1, 3).tolist()))

    assert REF_COLOUR in colours(ex.clean_uri) and CLEAN_COLOUR in colours(ex.clean_uri)
    assert ADV_COLOUR in colours(ex.adv_uri) and CLEAN_COLOUR not in colours(ex.adv_uri)
    assert ex.fooled and math.isclose(ex.linf, 10 / 255, abs_tol=1e-6)


def _copy_store(results_dir: Path, dest: Path, *sql: str) -> Path:
    dest.mkdir()
    shutil.copy(results_dir / "results.sqlite", dest / "results.sqlite")
    db = sqlite3.connect(dest / "results.sqlite")
    with db:
        for q in sql:
            db.execute(q)
    db.close()
    return dest


def test_single_variant_report(results_dir, tmp_path):
    from robustbench_ofa.commands.report import write_reports

    quoted = OTHER.replace("'", "''")
    run = _copy_store(results_dir, tmp_path / "one", *(f"DELETE FROM {t} WHERE variant='{quoted}'"
                                                        for t in ("clean", "results", "examples", "checks")),
                      "DELETE FROM transfer")
    paths = write_reports(run, formats="html,md")
    page = paths[0].read_text()
    assert "Only one variant was evaluated" in page and "fig-robust-vs-eps" in page
    assert "fig-transfer" not in page


def test_incomplete_run_is_marked_on_every_pdf_page(poppler, results_dir, tmp_path):
    from robustbench_ofa.commands.report import write_reports

    pdftotext = poppler["pdftotext"]
    run = _copy_store(results_dir, tmp_path / "inc", "UPDATE meta SET value='false' WHERE key='complete'")
    (pdf,) = write_reports(run, formats=["pdf"], allow_incomplete=True)
    text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [t for t in text.split("\f") if t.strip()]
    assert len(pages) >= 2 and all("INCOMPLETE RUN" in t for t in pages)
