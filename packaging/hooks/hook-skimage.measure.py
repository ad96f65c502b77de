"""Narrow replacement of pyinstaller-hooks-contrib's hook for ``skimage.measure`` (trimmed bundle only).

The contrib hook collects every submodule of the package. The kiosk uses one scikit-image
function, ``skimage.feature.multiscale_basic_features`` (the instant learner,
``labelassist.learning.pixel_classifier``); this hook ships the lazy loader's stub (``__init__.pyi``,
which ``lazy_loader.attach_stub`` reads at import) and only the submodules that path needs.
``feature.peak`` imports the package (``from .. import measure``); nothing of it runs.
"""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("skimage.measure", includes=["*.pyi"])
hiddenimports = []
