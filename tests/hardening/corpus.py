"""The whole corpus: every bad-input case of issues 9, 12, 17 and 22, plus controls that must succeed."""

from __future__ import annotations

from collections import Counter

from tests.hardening.cases import Case
from tests.hardening.corpus_bench import BENCH_CASES
from tests.hardening.corpus_coco import COCO_CASES
from tests.hardening.corpus_infer import INFER_CASES
from tests.hardening.corpus_openvino import OPENVINO_CASES
from tests.hardening.corpus_paths import PATH_CASES
from tests.hardening.corpus_report import REPORT_CASES
from tests.hardening.corpus_round3 import ROUND3_CASES
from tests.hardening.corpus_special import SPECIAL_CASES
from tests.hardening.corpus_torch import TORCH_CASES


def all_cases() -> list[Case]:
    """Every case, names unique; infer cases first (they are the bulk and the fastest)."""
    cases = (COCO_CASES + INFER_CASES + TORCH_CASES + BENCH_CASES + PATH_CASES + SPECIAL_CASES + ROUND3_CASES
             + OPENVINO_CASES + REPORT_CASES)
    twice = [name for name, count in Counter(c.name for c in cases).items() if count > 1]
    if twice:
        raise ValueError(f"case names used twice: {twice}")
    return cases
