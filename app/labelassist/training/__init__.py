"""Training side of the pre-label models (needs the ``train`` extra: torch, onnx).

The kiosk never imports this package at run time except :mod:`labelassist.training.job`
(training-job export, numpy/OpenCV only). :mod:`labelassist.training.core` is the whole
self-contained training code (PyTorch U-Net -> ONNX + model card, static int8 QDQ).
"""
