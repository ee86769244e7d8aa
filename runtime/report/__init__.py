"""The evaluation report (tseg-infer --eval --report DIR) and two of them side by side (tseg-report A B):
pages a person opens from disk."""
