"""The evaluation report: a page a person opens from disk (tseg-infer --eval --report DIR)."""
