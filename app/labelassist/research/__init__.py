"""Measuring the assistance: evaluations and experiments, apart from the kiosk's labelling path.

Nothing is imported here, so importing one module (the session needs :mod:`.prelabel_eval` and
:mod:`.box_eval` for its measured choices) never pulls in the training experiments.

=========================== ==================================================================
module                      what it is for
=========================== ==================================================================
:mod:`.prompts`             the taps and boxes a careful annotator would give, from a true mask
:mod:`.prelabel_eval`       which pre-label helps: DSC, correction effort and time per method
:mod:`.box_eval`            which box-prompt method (tap-to-segment) fits the objects best
:mod:`.folder_eval`         the pre-label evaluation on folders of images and masks (no project)
:mod:`.experiment_net`      the small U-Net the experiments train in memory
:mod:`.selector_experiment` the selector comparison (paper Table 1): ``labelassist evaluate selector``
:mod:`.simulated_annotator` a simulated annotator walking a project's session: ``labelassist simulate``
:mod:`.plots`               the PNG figures of the evaluations and experiments (OpenCV)
=========================== ==================================================================
"""
