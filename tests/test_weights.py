"""The three weights loaders (generator, encoder, attribute classifier) share `ganinv.utils.weights` and fail alike:
a missing, foreign or truncated file gets a one-line error that names the file and what to do."""

from pathlib import Path

import pytest

from ganinv.generators import GeneratorLoadError, load_generator
from ganinv.models.attributes import load_classifier
from ganinv.models.encoder import load_encoder

ASSETS = Path(__file__).resolve().parents[1] / "ganinv" / "assets" / "faces64"
# loader, a shipped file of another kind, (missing, bad-file) exception types, its "what to do" hint
LOADERS = {
    "generator": (load_generator, ASSETS / "encoder.safetensors", (GeneratorLoadError, GeneratorLoadError),
                  "convert-pkl"),
    "encoder": (load_encoder, ASSETS / "generator.safetensors", (FileNotFoundError, ValueError), "train-encoder"),
    "attribute classifier": (load_classifier, ASSETS / "encoder.safetensors", (FileNotFoundError, ValueError),
                             "train-classifier"),
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_missing_file_names_it_and_how_to_get_one(tmp_path, kind):
    load, _, (missing, _), hint = LOADERS[kind]
    with pytest.raises(missing, match=f"no {kind} at .*absent.safetensors.*{hint}"):
        load(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_file_of_another_kind_is_refused_by_name(kind):
    load, foreign, (_, bad), _ = LOADERS[kind]
    with pytest.raises(bad, match=f"{foreign.name} is a safetensors file without ganinv {kind} metadata"):
        load(foreign)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_truncated_file_gets_a_one_line_error_naming_it(tmp_path, kind):
    load, _, (_, bad), _ = LOADERS[kind]
    path = tmp_path / "cut.safetensors"
    path.write_bytes((ASSETS / "encoder.safetensors").read_bytes()[:5000])
    with pytest.raises(bad, match="cut.safetensors") as info:
        load(path)
    assert "\n" not in str(info.value)
