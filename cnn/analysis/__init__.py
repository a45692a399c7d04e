"""What a trained model says about inputs: `inference` (`explain`: one compiled pass for probabilities, every
layer's activations, Grad-CAM and saliency; `robustness`), `predict` (`predict_images` for files), `metrics`
(`evaluate`: accuracy, confusion matrix, per-class), and knowing when it doesn't know: `temperature`
(temperature scaling, reliability), `ood` (the out-of-distribution score and verdict), `calibration`
(Calibration: fit, store, `assess`) with `checks` (values read from calibration.json).
"""
