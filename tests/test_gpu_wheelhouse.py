"""gpu/check_wheelhouse.py: the check that the wheels carried to the GPU device install there with `--no-deps`."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_wheelhouse", ROOT / "gpu" / "check_wheelhouse.py")
check_wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_wheelhouse)

PURE, CP312 = "py3-none-any", "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
PIPLIST = "# the image\nnumpy==2.5.2\npackaging==26.3\nPyYAML==6.0.3\ntyping_extensions==4.16.0\n"
PYPROJECT = '[project]\ndependencies = ["zarr>=3.1", "numpy>=1.26"]\n[project.optional-dependencies]\ntest = ["moto>=5"]\n'


def make_wheel(folder: Path, name: str, version: str, *requires: str, tag: str = PURE) -> Path:
    """A wheel holding only its METADATA (name, version, Requires-Dist lines)."""
    path = folder / f"{name}-{version}-{tag}.whl"
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {req}" for req in requires)]
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def zarr_stack(folder: Path) -> list[Path]:
    """A closed set on PIPLIST's image, with requirements that apply only elsewhere (an extra, another Python)."""
    return [make_wheel(folder, "zarr", "3.1.6", "donfig>=0.8", "numcodecs>=0.14", "numpy>=2.0", "packaging>=22.0",
                       "cupy-cuda12x; extra == 'gpu'", "exceptiongroup; python_version < '3.11'"),
            make_wheel(folder, "donfig", "0.8.1", "pyyaml"),
            make_wheel(folder, "numcodecs", "0.16.6", "numpy>=1.24", "typing_extensions", tag=CP312)]


@pytest.fixture
def image(tmp_path: Path) -> list[str]:
    """The options that point the check at a made-up device image and pyproject.toml."""
    (tmp_path / "piplist.txt").write_text(PIPLIST)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return ["--device-piplist", str(tmp_path / "piplist.txt"), "--pyproject", str(tmp_path / "pyproject.toml")]


def test_a_closed_set_of_py312_wheels_passes_and_names_what_is_left_out(tmp_path, image, capsys):
    assert check_wheelhouse.main([*map(str, zarr_stack(tmp_path)), *image]) == 0
    out = capsys.readouterr()
    assert "3 wheels" in out.out and "closed" in out.out and "neither there nor here: moto" in out.out
    assert out.err == ""


@pytest.mark.parametrize("extra, problem", [
    (lambda d: make_wheel(d, "lpips", "0.1.4", "torch>=0.4.0"), "needs torch>=0.4.0, neither on the image nor in"),
    (lambda d: make_wheel(d, "tblib", "3.0", "numpy>=9"), "needs numpy>=9, the image has 2.5.2"),
    (lambda d: make_wheel(d, "dask", "2026.1.0", "donfig>=1"), "needs donfig>=1, the wheelhouse has 0.8.1"),
    (lambda d: make_wheel(d, "PyYAML", "6.0.3", tag=CP312), "the image already has pyyaml"),
    (lambda d: make_wheel(d, "crc32c", "2.7", tag="cp311-cp311-manylinux_2_17_x86_64"), "not installable on"),
    (lambda d: make_wheel(d, "crc32c", "2.7", tag="cp312-cp312-macosx_11_0_arm64"), "not installable on"),
    (lambda d: make_wheel(d / "old", "zarr", "2.18.7"), "zarr comes twice"),
    (lambda d: make_wheel(d / "old", "zarr", "2.18.7"), "pyproject.toml asks for zarr>=3.1"),
])
def test_a_wheel_that_would_break_the_no_deps_install_is_named(tmp_path, image, capsys, extra, problem):
    (tmp_path / "old").mkdir()
    wheels = [*zarr_stack(tmp_path), extra(tmp_path)]
    assert check_wheelhouse.main([*map(str, wheels), *image]) == 1
    out = capsys.readouterr()
    assert problem in out.err and "problem(s)" in out.out
