"""One labelling session: the workflow engine the UI (and the CLI) talks to, and nothing else.

The flow of one sample::

    Session.next()      the selector's choice, with its display image h(x) and its
                        pre-label l(x) ready (prepared in the background for the
                        next few samples, so opening is instant)
    Session.submit()    inspection γ(y) of the corrected mask, and post-processing
                        suggestions to show before/after
    Session.save()      a new label version in the store, with time spent and strokes
                        (SaveFlow runs submit, the user's answers and save as one state machine)

No Kivy here: every action a user can take on screen is a method a test can call.

Modules
-------
core          the :class:`Session` front: next, open, submit, save, record_edit, recover
pool          what to label next: selector features, model uncertainty, ranking
lookahead     samples prepared ahead, on the background thread
assisted      a sample ready to label (:class:`Assisted`)
assistance    which pre-label (the candidates: steps, imported, shipped and learned models), and why
box_assistance  which box method tap-to-segment runs, and why
review        inspection, highlight and post-processing suggestions of a finished mask (:class:`Submission`)
save_flow     Save & next as a state machine without a GUI (:class:`~labelassist.session.save_flow.SaveFlow`):
              suggestions, re-inspection, warning, save, next; the UI's worker drives it
journal       the stroke journal of unsaved edits, and the screen state
background    the one worker thread (preparations and measurements)
learning      the instant learner on a thread of its own: learns every save, teaches from strokes
"""

from labelassist.session.assistance import (
    EVALUATION_SAMPLES,
    MODEL_FREE_PRELABELS,
    REEVALUATE_EVERY,
    Candidate,
    PrelabelChoice,
)
from labelassist.session.box_assistance import BOX_EVALUATION_OBJECTS, BOX_EVALUATION_SAMPLES, BoxChoice
from labelassist.session.core import Session
from labelassist.session.assisted import Assisted
from labelassist.session.pool import Ranked
from labelassist.session.review import Submission

__all__ = ["Assisted", "Submission", "Ranked", "PrelabelChoice", "BoxChoice", "Session",
           "MODEL_FREE_PRELABELS", "Candidate", "EVALUATION_SAMPLES", "REEVALUATE_EVERY", "BOX_EVALUATION_SAMPLES",
           "BOX_EVALUATION_OBJECTS"]
