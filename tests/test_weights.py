"""The three weights loaders (generator, encoder, attribute classifier) share `ganinv.utils.weights` and fail alike:
a missing, foreign or truncated file gets a one-line error that names the file and what to do."""

import os
from pathlib import Path

import pytest
import torch

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


def test_written_files_are_byte_reproducible_across_processes(tmp_path):
    # safetensors writes its metadata map in a per-process hash order; write_weights sorts it, so a shipped file's
    # sha256 is a function of its content. Three fresh interpreters (fresh hash seeds) must write the same bytes.
    import hashlib
    import subprocess
    import sys

    script = ("import sys, torch; from ganinv.utils.weights import write_weights; "
              "write_weights(sys.argv[1], {'b': torch.arange(5.0), 'a': torch.ones(2, 3, dtype=torch.float16)}, "
              "{f'key{i}': f'value {i} é' for i in range(12)})")
    digests = set()
    for i in range(3):
        path = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env={**os.environ,
                       "PYTHONHASHSEED": str(i)})
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    from safetensors import safe_open
    with safe_open(str(tmp_path / "w0.safetensors"), framework="pt") as f:
        assert f.metadata()["key7"] == "value 7 é"
        assert f.get_tensor("b").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert f.get_tensor("a").dtype == torch.float16
    assert not list(tmp_path.glob(".*.tmp"))
