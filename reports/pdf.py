"""The PDF: the report's HTML laid out by weasyprint under the print rules of ``report.css``.

weasyprint (with its pango system library) is imported only here, so HTML and Markdown reports work
without it; a missing install is a one-line error that names the fix.
"""

from __future__ import annotations

from pathlib import Path

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write

INSTALL_HINT = "pip install 'weasyprint>=70,<71' (and the pango library: apt-get install libpango-1.0-0 libpangoft2-1.0-0)"


def _weasyprint():
    from PIL import ImageFile

    # WeasyPrint sets PIL's process-wide LOAD_TRUNCATED_IMAGES on import; the data loaders rely on
    # truncated images raising, so the previous value is put back.
    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import weasyprint
    except ImportError:
        raise RobustOFAError(f"PDF report: weasyprint is not installed; {INSTALL_HINT}") from None
    except OSError as exc:  # the package is there but pango/cairo cannot be loaded
        raise RobustOFAError(f"PDF report: weasyprint cannot load its system libraries ({exc}); {INSTALL_HINT}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = strict
    return weasyprint


def write_pdf(html: str, path: Path, base_url: str | Path | None = None) -> Path:
    """Render ``html`` (self-contained) to ``path`` through a temporary name, so no half-written PDF remains."""
    weasyprint = _weasyprint()
    import logging

    # weasyprint warns about screen-only CSS it ignores (sticky headers, user-select): not our problem here.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    page = weasyprint.HTML(string=html, base_url=str(base_url or path.parent))
    return atomic_write(path, lambda tmp: page.write_pdf(str(tmp)))
