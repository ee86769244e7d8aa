"""tseg-bench: latency, throughput, accuracy and efficiency of exported models on this machine.

Modules: :mod:`flops` (FLOPs from the ONNX graph), :mod:`stats` (run-until timing and
percentiles), :mod:`machine` (what the machine is, its measured GEMM peak), :mod:`measure`
(one row per model, precision, device, size and batch, measured interleaved), :mod:`report`
(terminal table, JSON, Markdown), :mod:`cli` (the ``tseg-bench`` command).
"""
