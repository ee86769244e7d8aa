"""Which tseg-infer options go together: settings that would be silently ignored are refused up front."""

from __future__ import annotations

import click
from click.core import ParameterSource

from tseg.runtime.cli_errors import spelling
from tseg.runtime.errors import TsegError

# The CRF parameters tseg-infer takes as --crf-NAME (crf.json and CrfParams spell them NAME).
CRF_FLAGS = (
    "iterations",
    "gaussian_sxy",
    "gaussian_compat",
    "bilateral_sxy",
    "bilateral_srgb",
    "bilateral_compat",
)


def given_options(context: click.Context) -> set[str]:
    """The names of the options the user typed (or set through the environment), not defaults."""
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name for name in context.params if context.get_parameter_source(name) in typed}


def check_combinations(*, command: click.Command, given: set[str], has_paths: bool, has_coco: bool) -> None:
    """Refuses settings that would be silently ignored, and missing ones, before any work.

    Args:
        command: tseg-infer's click command (its options' spellings name them in errors).
        given: names of the options the user set (see :func:`given_options`).
        has_paths: PATHS were given.
        has_coco: --coco was given.

    Raises:
        TsegError: naming the option and what it needs.
    """
    crf_flags = sorted(n for n in given if n in CRF_FLAGS or n == "crf_device")
    if "score_submission" in given:
        clashes = sorted(given - {"score_submission", "coco", "data", "quiet", "verbose", "max_image_pixels"})
        if clashes or has_paths:
            what = spelling(command, clashes[0]) if clashes else "PATHS"
            raise TsegError(f"{what} does not apply to --score-submission (it scores a CSV; no model is run)")
        if not has_coco:
            raise TsegError("--score-submission needs --coco with the annotated split the CSV was made for")
        return
    if "crf_tune" in given:
        from tseg.runtime.infer.crf_tune import DEFAULT_GRID

        unused = ("use_crf", "evaluate", "out", "batch_size", "workers", "fail_fast", "overlay", "submission",
                  "report", "report_images")
        clashes = [n for n in (*unused, "tta", "tta_scales") if n in given]
        clashes += [n for n in crf_flags if n in DEFAULT_GRID]
        if has_paths:
            raise TsegError("--crf-tune searches on a COCO split (--coco); it does not take PATHS")
        if clashes:
            raise TsegError(
                f"{spelling(command, clashes[0])} does not apply to --crf-tune (it searches "
                f"{', '.join(spelling(command, n) for n in DEFAULT_GRID)}, prints the mIoU table and writes"
                " crf.json beside the model); run tseg-infer --crf afterwards"
            )
        if not has_coco:
            raise TsegError("--crf-tune needs --coco with an annotated split (e.g. val.json)")
        return
    if crf_flags and "use_crf" not in given:
        raise TsegError(f"{spelling(command, crf_flags[0])} needs --crf (or --crf-tune)")
    if "tune_images" in given:
        raise TsegError("--tune-images needs --crf-tune")
    if "report_images" in given and "report" not in given:
        raise TsegError("--report-images needs --report")
    if "report" in given and not (has_coco and "evaluate" in given):
        raise TsegError("--report needs --coco and --eval (the page shows the split's scores)")
    if has_paths and has_coco:
        raise TsegError("give either PATHS or --coco, not both")
    if not has_coco:
        if "evaluate" in given or "data" in given:
            raise TsegError("--eval and --data need --coco")
        if "submission" in given:
            raise TsegError("--submission needs --coco (a split whose images get one row each)")
        if not has_paths:
            raise TsegError("nothing to segment: give image files or folders, or --coco FILE")
