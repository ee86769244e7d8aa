"""What ``NAME.parity.json`` records, kept across tseg-export runs.

Every run judges the precisions it was asked for and rewrites the report. A precision it
did not make again keeps its earlier record when the file that record describes is still
there and unchanged: each verdict records its file's sha256, and a record is kept only when
the file (``NAME.PRECISION.onnx``, or its ``.rejected.onnx`` name when the gate rejected it)
still has that digest. A record whose file changed or is gone, or that carries no digest
(written before digests were recorded), is dropped. So after
``tseg-export --precision fp32,fp16,int8`` and then ``tseg-export --triton repo/``, the FP16
and INT8 records are still in the report, beside the new FP32 one.

The top-level ``passed`` of the report is true only when every record in it passed, kept
ones included.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from tseg.export.accuracy import GATED_PRECISIONS, PrecisionVerdict
from tseg.export.parity import ParityReport
from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import read_input

# A report holds a few KB per precision (its parity cases); anything far larger is not one.
MAX_REPORT_BYTES = 16 * 2**20
_CHUNK = 2**20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks (a model file can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_report(parity_path: Path) -> dict | None:
    """The report an earlier run left at ``parity_path`` (None when there is none).

    Raises:
        TsegError: something is there that is not a tseg parity report (not a regular file,
            larger than :data:`MAX_REPORT_BYTES`, not JSON, or JSON without parity cases):
            it is not tseg's to replace.
    """
    if not parity_path.exists():
        return None
    data = read_input(parity_path, what="the parity report", limit=MAX_REPORT_BYTES)
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("cases"), list):
        raise TsegError(
            f"out: {parity_path} exists and is not a tseg parity report: move it away or choose another output path",
            parameter="out",
        )
    return report


def kept_records(report: Mapping | None, files: Mapping[str, tuple[Path, Path]]) -> list[dict]:
    """The records of ``report`` worth keeping: those of ``files``' precisions whose file is unchanged.

    Args:
        report: the earlier report (:func:`read_report`), or None.
        files: precision -> (its file, its rejected name), for each precision this run does
            not make again.

    Returns:
        The kept records, in the order of ``files``, their ``path`` and ``rejected_as``
        spelled as ``files`` spells them.
    """
    records = report.get("precisions") if report is not None else None
    if not isinstance(records, list):
        return []
    kept = {}
    for record in records:
        precision = record.get("precision") if isinstance(record, dict) else None
        if precision in files and precision not in kept:
            checked = _unchanged(record, *files[precision])
            if checked is not None:
                kept[precision] = checked
    return [kept[p] for p in files if p in kept]


def _unchanged(record: dict, path: Path, rejected: Path) -> dict | None:
    """``record`` re-spelled, when the file it describes is still there with its digest; else None."""
    digest = record.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest) or not isinstance(record.get("passed"), bool):
        return None
    was_rejected = bool(record.get("rejected_as"))
    where = rejected if was_rejected else path
    if not where.is_file() or file_sha256(where) != digest:
        return None
    return {**record, "path": str(path), "rejected_as": str(rejected) if was_rejected else None}


def merged_report(fp32: ParityReport, verdicts: Sequence[PrecisionVerdict], kept: Sequence[dict]) -> dict:
    """The report to write: FP32's parity figures, then one record per precision (this run's and the kept ones).

    ``passed`` is true only when every record passed (this run's verdicts and the kept records).
    """
    records = {v.precision: v.to_dict() for v in verdicts}
    for record in kept:
        records.setdefault(record["precision"], record)
    ordered = [records[p] for p in GATED_PRECISIONS if p in records]
    body = fp32.to_dict()
    body["passed"] = all(record["passed"] for record in ordered)
    body["precisions"] = ordered
    return body
