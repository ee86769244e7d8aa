"""tseg-report: two evaluation reports of one split side by side, on one page that opens from disk."""

from __future__ import annotations

from pathlib import Path

import click

from tseg.runtime.cli_errors import OneLineCommand, one_line_errors
from tseg.runtime.files import RUNS_DIR
from tseg.runtime.report.compare_write import COMPARE_DIR, CompareSettings, compare_folders
from tseg.runtime.report.write import MAX_REPORT_IMAGES


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", metavar="A", type=click.Path(path_type=Path))
@click.argument("b", metavar="B", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    help="Folder for the comparison (index.html opens from disk; new, empty, or an earlier comparison, which is"
    f" replaced). Default: a new folder {RUNS_DIR}/{COMPARE_DIR}/A-vs-B.",
)
@click.option(
    "--images",
    default=6,
    show_default=True,
    type=click.IntRange(min=0, max=MAX_REPORT_IMAGES),
    help="How many of the images that got worse in B, and of those that got better, are pictured.",
)
@one_line_errors
def main(a: Path, b: Path, out: Path | None, images: int) -> None:
    """Compare two reports written by tseg-infer --eval --report on the same split: B against A.

    \b
    Examples:
      tseg-report report-fp32/ report-int8/ --out compare/
      tseg-report plain/ crf/ --images 10        # out: runs/compare/plain-vs-crf
    """
    page, comparison = compare_folders(CompareSettings(a=a, b=b, out=out, images=images))
    before, after = comparison.a.scores.miou, comparison.b.scores.miou
    counts = comparison.counts()
    click.echo(f"mIoU {before:.4f} in A, {after:.4f} in B ({after - before:+.4f}); of {len(comparison.pairs)}"
               f" images {counts['better']} got better, {counts['worse']} worse")
    click.echo(f"comparison written to {page}")


if __name__ == "__main__":
    main()
