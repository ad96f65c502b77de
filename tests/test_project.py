"""project.toml: written readable, read back identical, every key checked."""

from __future__ import annotations

import tomllib

import pytest

from labelassist.errors import ImageReadError, ProjectError
from labelassist.project import DEFAULT_SETTINGS, Project, validate_settings
from labelassist.tomlout import dump_toml


def test_new_project_settings_round_trip(tmp_path):
    with Project.create(tmp_path / "p", name="Scratch \"assay\" 2026") as project:
        written = (tmp_path / "p" / "project.toml").read_text()
        assert written.startswith("# Label Assistant project settings")
        assert project.name == 'Scratch "assay" 2026'
    with Project.open(tmp_path / "p") as project:
        assert project.settings["selector"]["weights"] == DEFAULT_SETTINGS["selector"]["weights"]
        assert project.settings["preprocess"]["pipeline"] == DEFAULT_SETTINGS["preprocess"]["pipeline"]
        project.settings["priors"]["segments"] = 2
        project.settings["inspection"]["gamma0"] = 0.6
        project.save_settings()
    with Project.open(tmp_path / "p") as project:
        assert project.settings["priors"]["segments"] == 2
        assert project.settings["inspection"]["gamma0"] == 0.6
        assert [e["action"] for e in project.store.events()] == ["create_project", "settings"]


def test_dump_is_valid_toml_for_the_defaults():
    assert validate_settings(tomllib.loads(dump_toml(DEFAULT_SETTINGS))) == validate_settings({})


@pytest.mark.parametrize("raw,message", [
    ({"selector": {"weights": {"random": -1}}}, "must be a number ≥ 0"),
    ({"selector": {"weights": {"random": 0, "sequential": 0}}}, None),
    ({"inspection": {"weights": {k: 0 for k in DEFAULT_SETTINGS["inspection"]["weights"]}}}, "add up to 0"),
    ({"inspection": {"gamma0": 1.5}}, "between 0 and 1"),
    ({"priors": {"segmnets": 2}}, "unknown setting 'priors.segmnets'"),
    ({"labels": {"classes": "foreground"}}, "'labels.classes' must be list"),
    ({"preprocess": []}, "'preprocess' must be a table"),
    ({"prelabel": {"min_dsc": True}}, "'prelabel.min_dsc' must be float"),
])
def test_settings_are_checked(raw, message):
    if message is None:
        # Zero weights for some strategies are fine as long as one stays positive.
        assert validate_settings(raw)["selector"]["weights"]["random"] == 0
        return
    with pytest.raises(ProjectError, match=message):
        validate_settings(raw)


def test_invalid_toml_names_the_file(tmp_path):
    Project.create(tmp_path / "p").close()
    (tmp_path / "p" / "project.toml").write_text("[project\nname = 'x'\n")
    with pytest.raises(ProjectError, match="project.toml is not valid TOML"):
        Project.open(tmp_path / "p")


def test_sample_pixels_and_cached_thumbnails(tmp_path, datasets):
    from labelassist.importer import import_images

    images = tmp_path / "images"
    images.mkdir()
    src = datasets / "usiigaci_phase" / "images" / "001.tif"
    (images / "001.tif").write_bytes(src.read_bytes())
    with Project.create(tmp_path / "p") as project:
        import_images(project, [images])
        sample = project.store.samples()[0]
        pixels = project.read_image(sample)
        assert pixels.dtype.name == "uint16" and pixels.shape == (sample.height, sample.width)
        thumb = project.thumbnail(sample)
        assert thumb.dtype.name == "uint8" and max(thumb.shape) == 128
        cached = list((tmp_path / "p" / "cache" / "thumbnails").iterdir())
        assert len(cached) == 1
        (images / "001.tif").unlink()  # the cache serves the thumbnail; the pixels are gone
        assert (project.thumbnail(sample) == thumb).all()
        with pytest.raises(ImageReadError, match="image 001.tif is missing .* run 'labelassist relink'"):
            project.read_image(sample)
