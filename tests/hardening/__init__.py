"""The bad-input harness: a corpus of hostile inputs run through every tseg CLI in a subprocess.

See :mod:`tests.hardening.runner` (``python -m tests.hardening.runner --help``) and
``test_hardening.py`` (the pytest entry, one test per case). The corpus: ``corpus_coco``,
``corpus_infer``, ``corpus_torch``, ``corpus_bench`` (issues 9 and 12, written case by case),
``corpus_paths`` (every output option x input role x way of being the same file, generated),
``corpus_special`` (FIFOs, devices, sparse giants as inputs, generated) and ``corpus_round3``
(temp files, long names, collisions, ONNX Runtime noise, records; issue 17). How a case runs:
``cases`` (its sandbox), ``child`` (the limit/mount shim), ``checks`` (what it is judged by).
"""
