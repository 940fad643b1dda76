"""One exit-code policy for every command (cli/errors.py): a UserError exits 2 with one line; anything else is a bug
and exits 3 naming the file its traceback was saved to; a plain ValueError is not mistaken for a usage error."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from cli.app import app
from ganinv.errors import UserError
from storage import LatentStore, StoreNotFoundError

runner = CliRunner()


def test_a_user_error_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = runner.invoke(app, ["store-info", str(tmp_path / "nowhere.zarr")])
    assert result.exit_code == 2 and result.stderr.startswith("error: no latent store")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert isinstance(StoreNotFoundError("x"), UserError)


@pytest.mark.parametrize("bug", [TypeError("unexpected keyword 'foo'"), ValueError("a bare ValueError"),
                                 KeyError("status")])
def test_anything_else_is_a_bug_exit_3_with_its_traceback_in_a_named_file(tmp_path, monkeypatch, bug):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setenv("GANINV_CRASH_DIR", str(tmp_path / "crashes"))
    monkeypatch.setattr(LatentStore, "open", broken)
    result = runner.invoke(app, ["store-info", str(tmp_path / "corpus.zarr")])
    assert result.exit_code == 3 and result.stderr.count("\n") == 1, result.output
    crash = next((tmp_path / "crashes").glob("ganinv-crash-*.txt"))
    assert str(crash) in result.stderr and type(bug).__name__ in result.stderr
    assert "Traceback" in crash.read_text() and "def broken" not in result.stderr and "in broken" in crash.read_text()


def test_usage_errors_stay_typers_own():
    result = runner.invoke(app, ["invert", "photos", "--store", "s.zarr", "--batch-size", "many"])
    text = " ".join(result.output.replace("│", " ").split())  # rich wraps the message in a box
    assert result.exit_code == 2 and "positive number of images or 'auto'" in text


def test_ganinvs_own_error_classes_of_user_mistakes_are_user_errors():
    names = ["ganinv.generators.io.GeneratorLoadError", "ganinv.losses.lpips_distance.PerceptualWeightsMissing",
             "ganinv.metrics.fid.InceptionWeightsMissing", "ganinv.utils.weights.MissingWeights",
             "ganinv.utils.weights.BadWeightsFile", "ganinv.training.train_encoder.RunConfigMismatch"]
    for name in names:
        module, _, cls = name.rpartition(".")
        error = getattr(importlib.import_module(module), cls)
        assert issubclass(error, UserError), name
    assert not issubclass(ValueError, UserError) and not issubclass(RuntimeError, UserError)