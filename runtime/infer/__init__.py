"""tseg-infer: the CLI, the run over files or a COCO split, the pipeline, its outputs, CRF tuning."""
