"""Learning from the biologist's labels on the tablet (issue 14).

================  ===============================================================================
``pixel_classifier``  multi-scale filter features and a random forest (the ilastik approach):
                  ``features``, ``sample_training_pixels``, ``train``, ``predict``,
                  ``propose_from_scribbles`` (teach mode); pure numpy and scikit-learn
``instant``       ``InstantLearner``: retrained on every saved label, scored on each new label
                  before it learns from it (``Score``), ``LearnedModel``
================  ===============================================================================

scikit-learn and scikit-image are imported when these modules are, so the kiosk imports them on
its learner thread, never at start-up.
"""
