"""The kiosk's palette, in one place: the kv files read it (theme.kv ``#:set``), and so does Python.

High contrast on a dark background; each colour is an RGBA tuple of floats in [0, 1]. No Kivy
here: a plain module that anything may read.
"""

from __future__ import annotations

BG = (0.06, 0.07, 0.08, 1)          # the window and every screen
PANEL = (0.13, 0.14, 0.16, 1)       # bars and rails
ACCENT = (0.0, 0.55, 0.85, 1)       # the chosen tool, the action offered now
GO = (0.05, 0.55, 0.25, 1)          # Save & next, Continue
WARN = (0.85, 0.45, 0.0, 1)         # "Fix it"
STOP = (0.75, 0.12, 0.12, 1)        # leaving the kiosk
BUTTON = (0.24, 0.26, 0.30, 1)      # a button at rest
BUTTON_DOWN = (0.38, 0.41, 0.47, 1)  # a button while pressed

OK_TEXT = (0.6, 1, 0.7, 1)          # a status line that reports progress
ERROR_TEXT = (1, 0.55, 0.45, 1)     # a status line that reports a failure
WARN_TEXT = (1, 0.8, 0.3, 1)        # a status line that asks the user to do something first

# The teach tool's strokes on the canvas: unlike the label (magenta), the pre-label (cyan) and
# the regions to fix (amber), and unlike each other on grey microscopy.
TEACH_OBJECT = (0.45, 1, 0.15, 1)       # "this is object": green
TEACH_BACKGROUND = (0.3, 0.45, 1, 1)    # "this is background": blue

# A proposed object (tap-to-segment, the wand) before Add: an outline unlike the label (magenta),
# the pre-label (cyan), the regions to fix (amber) and the teach strokes; "not object" taps red.
OBJECT_PROPOSAL = (1, 1, 0.25, 1)       # bright yellow
NOT_OBJECT = (1, 0.3, 0.3, 1)           # a "not object" tap: red
PROPOSAL_EDGE = (0, 0, 0, 0.85)         # under the outline and the taps: seen on bright cells too
