"""Bad input for tseg-bench (issue 12): each is one line on stderr, exit 1, nothing written."""

from __future__ import annotations

from tests.hardening.cases import Case, Sandbox

# Cheap timing: a control still runs a real row (and the GEMM peak) end to end.
FAST = ["--min-time", "0", "--min-runs", "2", "--warmup", "1", "--pause", "0", "--no-progress"]


def _bench(name: str, build, *, expect_ok: bool = False) -> Case:
    return Case(name, "bench", build, expect_ok=expect_ok)


def _with_model(*extra: str):
    return lambda box: [box.rel(box.real_model()), *FAST, *extra]


def _not_tseg(box: Sandbox) -> list[str]:
    return [box.rel(box.model(props={})), *FAST]


def _json_over_input(box: Sandbox) -> list[str]:
    model = box.real_model()
    return [box.rel(model), *FAST, "--json", box.rel(model)]


BENCH_CASES = [
    _bench("bench/missing-model", lambda box: [box.rel(box.inputs / "none.onnx"), *FAST]),
    _bench("bench/not-a-tseg-onnx", _not_tseg),
    _bench("bench/garbage-model", lambda box: [box.rel(box.write("m.onnx", b"\x00not onnx" * 50)), *FAST]),
    _bench("bench/unknown-device", _with_model("--device", "cpu,tpu")),
    _bench("bench/size-not-a-number", _with_model("--sizes", "256,big")),
    _bench("bench/batch-zero", _with_model("--batch-sizes", "0")),
    _bench("bench/coco-missing", lambda box: [box.rel(box.real_model()), *FAST, "--coco",
                                             box.rel(box.inputs / "val.json")]),
    _bench("bench/checkpoint-not-tseg", lambda box: [box.rel(box.real_model()), *FAST, "--checkpoint",
                                                    box.rel(box.write("x.pt", b"not a checkpoint"))]),
    _bench("bench/json-onto-the-model", _json_over_input),
    _bench("control/bench-real-model", lambda box: [box.rel(box.real_model()), *FAST, "--json",
                                                   box.rel(box.out / "bench.json")], expect_ok=True),
]
