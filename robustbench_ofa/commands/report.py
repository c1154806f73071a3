"""``robust-ofa report``: comparative robustness reports (HTML, PDF, Markdown, LaTeX) from a results directory.

``robust-ofa evaluate`` calls ``write_reports`` at the end of a run; this command re-renders them, for
instance in other formats or against another reference variant, without touching the results.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text, check_output_dir

#: The file each report format is written to; its keys are the formats this module can write.
FILE_NAMES = {"html": "report.html", "pdf": "report.pdf", "md": "report.md", "tex": "report-tables.tex"}
FORMATS = tuple(FILE_NAMES)


def parse_formats(formats: str | Iterable[str], option: str = "--format") -> list[str]:
    """'html,pdf' or ['html', 'pdf'] -> ['html', 'pdf'] (validated, duplicates dropped, order kept).

    ``option`` names the command-line option in the error line (``--report`` for ``robust-ofa evaluate``).
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = [f.strip().lower() for f in items if f and f.strip()]
    for f in out:
        if f not in FORMATS:
            raise RobustOFAError(f"{option}: unknown report format {f!r} (choose from {', '.join(FORMATS)})")
    if not out:
        raise RobustOFAError(f"{option}: expected at least one of {', '.join(FORMATS)}")
    return list(dict.fromkeys(out))


def write_reports(results_dir: str | Path, formats: str | Iterable[str] = ("html", "pdf"),
                  out: str | Path | None = None, *, allow_incomplete: bool = False, reference: str | None = None,
                  ablation: str | Path | None = None) -> list[Path]:
    """Write the requested reports for a results directory and return their paths.

    ``out`` defaults to the results directory itself (``report.html``, ``report.pdf``, ``report.md``,
    ``report-tables.tex`` next to ``summary.json``). Raises ``RobustOFAError`` (one line) for a missing
    directory or store, an incomplete run without ``allow_incomplete``, an unknown format, or a PDF
    requested without weasyprint. The PDF is written last, so the other formats exist even if it fails.
    """
    from reports import html as html_mod
    from reports import markdown as md_mod
    from reports.build import load_report

    fmts = parse_formats(formats)
    results_dir = Path(results_dir)
    if out is not None:  # checked before the report is built; the default (the results folder) once it exists
        check_output_dir(out, "--out")
    elif os.path.isdir(results_dir):
        check_output_dir(results_dir, "--out (default: RESULTS_DIR)")
    report = load_report(results_dir, allow_incomplete=allow_incomplete, reference=reference, ablation=ablation,
                         with_figures=bool({"html", "pdf"} & set(fmts)))
    target = Path(out) if out is not None else results_dir
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobustOFAError(f"--out: cannot create {target}: {exc.strerror}") from None
    written: list[Path] = []
    page = html_mod.render(report) if {"html", "pdf"} & set(fmts) else ""
    for fmt in sorted(fmts, key=lambda f: f == "pdf"):
        path = target / FILE_NAMES[fmt]
        if fmt == "html":
            written.append(atomic_write_text(path, page))
        elif fmt == "md":
            written.append(atomic_write_text(path, md_mod.render_markdown(report)))
        elif fmt == "tex":
            written.append(atomic_write_text(path, md_mod.render_latex(report)))
        else:
            from reports.pdf import write_pdf

            written.append(write_pdf(page, path, base_url=target))
    return written


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write HTML/PDF/Markdown/LaTeX robustness reports from a results directory",
                       description=__doc__)
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the --out directory of robust-ofa evaluate")
    p.add_argument("--format", default="html,pdf",
                   help=f"comma-separated formats among {', '.join(FORMATS)} (default: html,pdf)")
    p.add_argument("--out", default=None, help="where to write the reports (default: RESULTS_DIR)")
    p.add_argument("--reference", default=None,
                   help="variant every other is compared with (default: the finetuned variant, else the first)")
    p.add_argument("--ablation", default=None,
                   help="prompt ablation CSV to plot (default: RESULTS_DIR/ablation.csv when present)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="report an unfinished run anyway (marked INCOMPLETE in every format)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = write_reports(args.results_dir, parse_formats(args.format), args.out,
                          allow_incomplete=args.allow_incomplete, reference=args.reference, ablation=args.ablation)
    for path in paths:
        print(f"report: {path}")
    return 0
