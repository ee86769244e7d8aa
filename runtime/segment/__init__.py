"""One image in, labels out: Segmenter, Prediction, images, upsampling, TTA, the CRF step, overlays."""
