"""The bad-input harness: a corpus of hostile inputs run through every tseg CLI in a subprocess.

See :mod:`tests.hardening.runner` (``python -m tests.hardening.runner --help``) and
``test_hardening.py`` (the pytest entry, one test per case).
"""
