"""Example plug-ins shipped with the package; copy one into a project's ``plugins/`` folder to use it."""
