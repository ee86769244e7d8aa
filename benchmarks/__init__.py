"""tseg-bench: latency, throughput, accuracy and efficiency of exported models on this machine.

A tool on top of the stages: it uses the runtime, and training only for the PyTorch eager
row (:mod:`eager`, imported with ``--checkpoint``). Beside its modules, the scripts behind the
README's speed claims (``python benchmarks/crf.py``, ``infer.py``, ...).

Modules: :mod:`flops` (FLOPs from the ONNX graph), :mod:`stats` (run-until timing and
percentiles), :mod:`machine` (what the machine is, its measured GEMM peak), :mod:`measure`
(one row per model, precision, device, size and batch, measured interleaved), :mod:`report`
(terminal table, JSON, Markdown), :mod:`cli` (the ``tseg-bench`` command).
"""
