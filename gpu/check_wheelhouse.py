"""Check a wheelhouse before it is carried to the GPU device image and installed there with `pip install --no-deps`:

- every wheel installs on the image's CPython 3.12 on x86_64 Linux;
- no wheel shadows a package the image already has, and no project comes twice;
- the set is closed: each Requires-Dist that applies on the image is met by the image's pip list
  (gpu/device-piplist.txt) or by another wheel of the set;
- each wheel meets pyproject.toml's bound for its project;
- all of them fit the device call's carry limit.

usage: python gpu/check_wheelhouse.py WHEEL... [--device-piplist FILE] [--pyproject FILE]
Exit 0 with a summary, or 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
CARRY_LIMIT = 64 * 2**20  # what one device call carries of ignored files, all paths together
# The image's torch 2.11 wheels are manylinux_2_28, so its glibc is at least 2.28.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
DEVICE_TAGS = frozenset([*cpython_tags((3, 12), abis=["cp312"], platforms=PLATFORMS),
                         *compatible_tags((3, 12), "cp312", PLATFORMS)])
DEVICE_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
                  "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
                  "platform_machine": "x86_64", "os_name": "posix", "extra": ""}


def read_piplist(path: Path) -> dict[NormalizedName, Version]:
    """`name==version` lines (`pip list --format=freeze`; `#` comments allowed) -> {project: version}."""
    pins = (line.split("==") for line in path.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): Version(version) for name, version in pins}


def pyproject_bounds(path: Path) -> dict[NormalizedName, Requirement]:
    """The project's dependencies, every extra's included, by project name."""
    project = tomllib.loads(path.read_text())["project"]
    specs = project["dependencies"] + [s for extra in project.get("optional-dependencies", {}).values() for s in extra]
    return {canonicalize_name(req.name): req for req in map(Requirement, specs)}


def wheel_requirements(path: Path) -> list[Requirement]:
    """The wheel's Requires-Dist entries that apply on the device image (no extras asked for)."""
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(wheel.read(name).decode())
    requirements = map(Requirement, metadata.get_all("Requires-Dist") or [])
    return [req for req in requirements if req.marker is None or req.marker.evaluate(DEVICE_MARKERS)]


def check(wheels: list[Path], device: dict[NormalizedName, Version],
          bounds: dict[NormalizedName, Requirement]) -> list[str]:
    """One line per problem of `wheels` as a `--no-deps` install on top of the `device` image; [] when none."""
    problems, shipped = [], {}
    for path in wheels:
        name, version, _, tags = parse_wheel_filename(path.name)
        if name in shipped:
            problems.append(f"{path.name}: {name} comes twice (also {shipped[name][1].name})")
        shipped[name] = version, path
        if not tags & DEVICE_TAGS:
            problems.append(f"{path.name}: not installable on CPython 3.12, x86_64 Linux")
        if name in device:
            problems.append(f"{path.name}: the image already has {name} {device[name]}; drop the wheel")
        if name in bounds and not bounds[name].specifier.contains(version, prereleases=True):
            problems.append(f"{path.name}: pyproject.toml asks for {bounds[name]}")
    problems += unmet_requirements(shipped, device)
    if (total := sum(path.stat().st_size for path in wheels)) > CARRY_LIMIT:
        problems.append(f"{total / 2**20:.1f} MiB of wheels: over the device call's carry limit of 64 MiB")
    return problems


def unmet_requirements(shipped: dict[NormalizedName, tuple[Version, Path]],
                       device: dict[NormalizedName, Version]) -> list[str]:
    """The Requires-Dist entries of the `shipped` wheels that neither the image nor another shipped wheel meets."""
    available = {**device, **{name: version for name, (version, _) in shipped.items()}}
    problems = []
    for _, path in shipped.values():
        for req in wheel_requirements(path):
            needed = canonicalize_name(req.name)
            have = available.get(needed)
            if have is None:
                problems.append(f"{path.name}: needs {req}, neither on the image nor in the wheelhouse")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{path.name}: needs {req}, the {'wheelhouse' if needed in shipped else 'image'} "
                                f"has {have}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--device-piplist", type=Path, default=HERE / "device-piplist.txt")
    parser.add_argument("--pyproject", type=Path, default=HERE.parent / "pyproject.toml")
    args = parser.parse_args(argv)
    device, bounds = read_piplist(args.device_piplist), pyproject_bounds(args.pyproject)
    problems = check(args.wheels, device, bounds)
    for line in problems:
        print(f"check_wheelhouse: {line}", file=sys.stderr)
    shipped = {parse_wheel_filename(path.name)[0] for path in args.wheels}
    left_out = sorted(name for name in bounds if name not in device and name not in shipped)
    print(f"{len(args.wheels)} wheels, {sum(p.stat().st_size for p in args.wheels) / 2**20:.1f} MiB, "
          f"{'closed' if not problems else f'{len(problems)} problem(s)'} on the device image; "
          f"pyproject dependencies neither there nor here: {', '.join(left_out) or 'none'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
