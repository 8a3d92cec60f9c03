"""Writing a report's files: whole or not at all.

Every requested format is rendered in memory first; only then is each file written to a
temporary name in the target folder and moved into place with `os.replace` (atomic on one
file system). A bad format, a folder that cannot be written, or a failure while rendering
leaves no file behind, new or half-written; a failure while moving files into place (rare:
the folder was writable a moment before) removes the files this call already placed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from spendgate.errors import ValidationError
from spendgate.reports import csvfiles, excel, jsonfile, pdf
from spendgate.reports.model import Report

Renderer = Callable[[Report], dict[str, bytes]]
RENDERERS: dict[str, Renderer] = {
    "pdf": pdf.render,
    "xlsx": excel.render,
    "csv": csvfiles.render,
    "json": jsonfile.render,
}
FORMATS = tuple(RENDERERS)
"""The formats a report can be written in."""
_ALIASES = {"excel": "xlsx", "xls": "xlsx"}
SEED_NAMES = {
    "monthly": {
        ".pdf": "monthly_cost_report.pdf",
        ".xlsx": "monthly_cost_data.xlsx",
        ".json": "monthly_cost_report.json",
        "_summary.csv": "monthly_cost_summary.csv",
    }
}
"""The seed's undated file names (its `export_report_formats`), by report kind: each is
written beside spendgate's dated file of the same content (the latest report of the kind
written to the folder)."""


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """Formats from `"pdf,xlsx"` or a list, deduplicated in order; an unknown one is a
    `ValidationError` naming `format` and the valid ones."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        name = str(item).strip().lower().lstrip(".")
        name = _ALIASES.get(name, name)
        if name not in RENDERERS:
            raise ValidationError("format", item, f"one or more of {', '.join(FORMATS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValidationError("format", value, f"one or more of {', '.join(FORMATS)}")
    return tuple(out)


def check_folder(out_dir: str | os.PathLike[str]) -> Path:
    """The output folder, created if missing; one that cannot be written is a
    `ValidationError` naming `out_dir`."""
    folder = Path(out_dir)
    expected = "a folder this process can create and write files in"
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValidationError("out_dir", str(folder), f"{expected} ({parent} is a file)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValidationError(
                    "out_dir", str(folder), f"{expected} ({parent} is not writable)"
                )
            break
    return folder


def write(
    report: Report,
    formats: str | Iterable[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write `report` in `formats` (`"pdf,xlsx,csv,json"`) into `out_dir`; the paths written.
    A monthly report's files are written under the seed's names too (`SEED_NAMES`).

    `progress(step)` is called after each format is rendered (`"pdf"`, ...) and once the
    files are in place (`"written"`).
    """
    chosen = parse_formats(formats)
    folder = check_folder(out_dir)
    rendered: dict[str, bytes] = {}
    for fmt in chosen:
        rendered.update(RENDERERS[fmt](report))
        if progress is not None:
            progress(fmt)
    rendered.update(seed_copies(report, rendered))
    paths = _place(folder, rendered)
    if progress is not None:
        progress("written")
    return paths


def seed_copies(report: Report, rendered: dict[str, bytes]) -> dict[str, bytes]:
    """The rendered files the seed names too, under its names (`SEED_NAMES`)."""
    names = SEED_NAMES.get(report.kind, {})
    return {
        seed: rendered[report.stem + suffix]
        for suffix, seed in names.items()
        if report.stem + suffix in rendered
    }


def _place(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Stage every file under a temporary name, then move each into place."""
    token = secrets.token_hex(4)
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            tmp = folder / f".{name}.{token}.tmp"
            staged.append((tmp, folder / name))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, final in staged:
            os.replace(tmp, final)
            placed.append(final)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for final in placed:
            final.unlink(missing_ok=True)
        raise ValidationError(
            "out_dir", str(folder), f"a folder this process can write to ({exc.strerror})"
        ) from None
    return placed
