"""Training side of the pre-label models.

Two kinds of module live here:

* torch-free, imported by the kiosk: :mod:`labelassist.training.request` (the files of a training
  round: what the kiosk asks for and what the trainer answers) and :mod:`labelassist.training.job`
  (training-job export for a GPU machine, numpy/OpenCV only);
* the trainer's, run only in a process of its own (``labelassist _train-round FOLDER``):
  :mod:`~labelassist.training.child`, :mod:`~labelassist.training.tablet_round`,
  :mod:`~labelassist.training.warm_start` and :mod:`~labelassist.training.core` (the PyTorch U-Net ->
  ONNX + model card, static int8 QDQ), and the round's prompt stage, :mod:`~labelassist.training.prompt_round`
  and :mod:`~labelassist.training.prompt_adapt` (LiteMedSAM's decoder adapted to the project's objects).
  :mod:`~labelassist.training.steps` (how many steps fit a budget) is shared and torch-free. ``tests/test_architecture.py`` checks that nothing the kiosk
  imports reaches them.
"""
