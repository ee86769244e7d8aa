"""Datasets and scores: COCO reading and checks, metrics, label PNGs, the submission CSV."""
