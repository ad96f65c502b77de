"""Errors meant for people.

Every error the user can cause (bad files, a folder that is not a project, a
full disk...) is raised as a :class:`LabelAssistError` whose message is one plain
sentence that names the thing and the reason. The CLI prints it on one line and
the UI shows it in large type; the traceback goes to the log only.
"""


class LabelAssistError(Exception):
    """A problem the user can understand and act on; ``str(err)`` is the message."""


class ImageReadError(LabelAssistError):
    """An image or video file could not be read (unreadable, truncated, unsupported...)."""


class MaskError(LabelAssistError):
    """A mask does not fit its image or is not binary."""


class ProjectError(LabelAssistError):
    """A folder is not a project, or its settings are invalid."""


class StoreError(LabelAssistError):
    """The label database cannot be opened or written (corrupt, newer schema, disk full...)."""


class PluginError(LabelAssistError):
    """A workflow step or plug-in is unknown, misconfigured or failed."""
