"""Nothing is lost: the stroke journal of unsaved edits, and where the user was on screen.

Every finished edit of the open mask is journalled durably in the store; replaying a sample's
edits in order over the label version they started from gives the mask that was on screen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelassist.store import Store


def recover(store: Store, sample_id: int) -> np.ndarray | None:
    """The unsaved mask of a sample rebuilt from the journal, or None when it has no edits."""
    entries = store.journal(sample_id)
    if not entries:
        return None
    sample = store.sample(sample_id)
    base_id = entries[0][1]
    base = store.label(base_id).mask if base_id is not None else np.zeros(
        (sample.height, sample.width), dtype=bool)
    flat = base.ravel()
    for _kind, _base, indices, values in entries:
        flat[indices] = values
    return flat.reshape(sample.height, sample.width)


def remember(store: Store, **state: Any) -> None:
    """Keep where the user is (sample, zoom, pan, tool...) for the next start."""
    current = store.get_state("screen", {})
    current.update(state)
    store.set_state("screen", current)


def resume_state(store: Store) -> dict[str, Any]:
    """What :func:`remember` kept, e.g. ``{"sample_id": 12, "zoom": 2.0, ...}``."""
    return store.get_state("screen", {})


def sample_states(store: Store) -> dict[int, str]:
    """sample id -> ``unlabelled``, ``labelled``, ``warning`` (saved despite a warning),
    ``relevant`` or ``not_now`` (cherry-pick flags of unlabelled samples); for queue badges."""
    labels = store.label_states()
    flags = store.flags()
    states = {}
    for sid in store.sample_ids():
        if sid in labels:
            states[sid] = "warning" if labels[sid] else "labelled"
        elif sid in flags:
            states[sid] = "relevant" if flags[sid] else "not_now"
        else:
            states[sid] = "unlabelled"
    return states
