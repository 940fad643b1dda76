"""Refusals before anything heavy loads (issue 19, items 3 and 9): a store made with other settings (a loss too; a
restoration store's restoration too, its mask rule in any spelling), a misspelt mode, loss or restoration task, a
super-resolution factor no generator's size divides, another task's setting (even at its default), inpainting
without masks or with two kinds, a mask rule or hole colour not understood, a missing store or mask folder, IMAGES
with no image, a labels file that does not read are refused without importing torch or prefect (in well under a
second, where they took 3 to 30 s); the settings a CLI run checked are not checked again by its flow; the scan shows
its progress, and a refinement's bar says "refining". The names checked without torch are those the torch-side
registries use."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import fsspec.implementations.memory
import pytest
from typer.testing import CliRunner

from _flow_helpers import prepare_store
from _image_files import write_good_images
from cli import preflight
from cli.app import app
from runtime import coordinator, progress
from runtime.config import InvertConfig, RestoreConfig
from storage import listing
from storage.labels import LabelsError
from storage.listing import NoImagesError
from storage.scan import scan_images

REPO = Path(__file__).resolve().parents[1]
MISSING = "missing.zarr"

# expected message -> the command's arguments (in a folder with imgs/, made.zarr, a store made with 4 steps,
# restored.zarr, a denoising store made with 4 steps, the mse loss and sigma 0.2, and inpainted.zarr, an inpainting
# store whose masks come from the rule center-box:0.4)
RESUME_RESTORED = ("To resume with the store's own settings, give only IMAGES and --store: `ganinv restore IMAGES "
                   "--store restored.zarr`")
MASK_RULE_FORM = "write 'center-box[:AREA]' (e.g. center-box:0.4) or 'random-boxes[:COUNT]' (e.g. random-boxes:3)"
CASES = {
    "num_steps: stored 4, given 9": ["invert", "imgs", "--store", "made.zarr", "--steps", "9"],
    "seed.base: stored 0, given 7": ["invert", "imgs", "--store", "made.zarr", "--seed", "7"],
    "mode 'bogus' is not one of": ["invert", "imgs", "--store", "new.zarr", "--mode", "bogus"],
    "--betas: betas '0.7': give Adam's two betas": ["invert", "imgs", "--store", "new.zarr", "--betas", "0.7"],
    "inversion.betas: stored [0.9, 0.999], given [0.7, 0.7]": ["invert", "imgs", "--store", "made.zarr", "--betas",
                                                               "0.7,0.7"],
    "space must be one of": ["invert", "imgs", "--store", "new.zarr", "--space", "q"],
    "Invalid value for '--num-steps' / '--steps'": ["invert", "imgs", "--store", "new.zarr", "--steps", "0"],
    "inversion.loss: stored 'mse', given 'l1'": ["invert", "imgs", "--store", "made.zarr", "--loss", "l1"],
    "--loss: loss term 'bogus' in 'bogus' is not understood": ["invert", "imgs", "--store", "new.zarr", "--loss",
                                                                "bogus"],
    "--loss: loss term '2*vgg' in 'mse+2*vgg' is not understood": ["restore", "imgs", "--store", "r.zarr", "--task",
                                                                   "denoise", "--loss", "mse+2*vgg"],
    "unknown restoration task 'sharpen'": ["restore", "imgs", "--store", "r.zarr", "--task", "sharpen"],
    "super-resolution factor 3 is not a power of two": ["restore", "imgs", "--store", "r.zarr", "--task",
                                                        "super-resolution", "--factor", "3"],
    "task 'colorize' takes no --factor (--factor is for 'super-resolution')": ["restore", "imgs", "--store", "r.zarr",
                                                                            "--task", "colorize", "--factor", "3"],
    "task 'inpaint' takes no --sigma": ["restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-rule",
                                        "center-box", "--sigma", "0.3"],
    f"inversion.loss: stored 'mse', given 'l1'); codes made with different settings must not mix: write to a new "
    f"store. {RESUME_RESTORED}": ["restore", "imgs", "--store", "restored.zarr", "--loss", "l1"],
    f"inversion.num_steps: stored 4, given 9); codes made with different settings must not mix: write to a new "
    f"store. {RESUME_RESTORED}": ["restore", "imgs", "--store", "restored.zarr", "--task", "denoise", "--steps",
                                 "9"],
    f"(restoration.sigma: stored 0.2, given 0.3); codes made with different settings must not mix: write to a new "
    f"store. {RESUME_RESTORED}": ["restore", "imgs", "--store", "restored.zarr", "--sigma", "0.3"],
    f"(restoration.task: stored 'denoise', given 'colorize'); codes made with different settings must not mix: "
    f"write to a new store. {RESUME_RESTORED}": ["restore", "imgs", "--store", "restored.zarr", "--task",
                                                 "colorize"],
    "task 'denoise' takes no --factor (--factor is for 'super-resolution')": ["restore", "imgs", "--store",
                                                                             "restored.zarr", "--factor", "4"],
    "store made.zarr holds inversions, not restorations": ["restore", "imgs", "--store", "made.zarr", "--task",
                                                           "denoise"],
    "give --task (inpaint | super-resolution | colorize | denoise) to make the new store r.zarr": [
        "restore", "imgs", "--store", "r.zarr"],
    "task 'inpaint' needs masks: a folder of mask PNGs (--mask-dir) or a mask rule (--mask-rule)": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint"],
    "give masks as a folder (--mask-dir) or a rule (--mask-rule), not both": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-dir", "imgs", "--mask-rule",
        "center-box"],
    # another task's setting given at its default: ignored before, now refused as any other value is
    "task 'colorize' takes no --factor (--factor is for 'super-resolution'): leave it out": [
        "restore", "imgs", "--store", "r.zarr", "--task", "colorize", "--factor", "4"],
    "task 'inpaint' takes no --sigma (--sigma is for 'denoise'): leave it out": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-rule", "center-box", "--sigma", "0.1"],
    "task 'super-resolution' takes no --mask-holes (--mask-holes is for 'inpaint')": [
        "restore", "imgs", "--store", "r.zarr", "--task", "super-resolution", "--mask-holes", "white"],
    # a mask rule is compared with the store's (inpainted.zarr: center-box:0.4) in its one spelling
    "(restoration.mask_rule: stored 'center-box:0.4', given 'center-box:0.5'); codes made with different settings": [
        "restore", "imgs", "--store", "inpainted.zarr", "--mask-rule", "center-box:0.5"],
    "(restoration.mask_rule: stored 'center-box:0.4', given 'random-boxes:3')": [
        "restore", "imgs", "--store", "inpainted.zarr", "--mask-rule", "random-boxes"],
    # mask flags that are not understood: named with the accepted form, before they are compared with a store
    "--mask-holes 'grey' is not understood: write white or black": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-dir", "imgs", "--mask-holes", "grey"],
    f"--mask-rule 'center-box:big' is not understood: {MASK_RULE_FORM}": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-rule", "center-box:big"],
    f"--mask-rule 'stripes' is not understood: {MASK_RULE_FORM}": [
        "restore", "imgs", "--store", "inpainted.zarr", "--mask-rule", "stripes"],
    f"--mask-rule 'center-box:1.5': center-box area must be a fraction in (0, 1), got 1.5; {MASK_RULE_FORM}": [
        "restore", "imgs", "--store", "r.zarr", "--task", "inpaint", "--mask-rule", "center-box:1.5"],
    "--mask-rule 'random-boxes:0': random-boxes count must be at least 1": [
        "restore", "imgs", "--store", "inpainted.zarr", "--mask-rule", "random-boxes:0"],
    "--mask-dir 'nomasks' is not a folder": ["restore", "imgs", "--store", "r.zarr", "--task", "inpaint",
                                             "--mask-dir", "nomasks"],
    "--clean 'noclean' is not a folder": ["restore", "imgs", "--store", "r.zarr", "--task", "denoise", "--clean",
                                          "noclean"],
    **{f"{MISSING} ({name})": [name, MISSING, *rest] for name, rest in {
        "refine": ["--steps", "2"], "report": [], "store-info": [], "list-directions": [], "fit-boundaries": [],
        "discover-directions": [], "render-edits": ["--directions", "a"], "render-restored": ["--out", "o"],
        "render-morphs": ["--pairs", "a:b"], "style-mix": ["--content", "a", "--style", "b"]}.items()},
}
INPAINTED = RestoreConfig(task="inpaint", mask_rule="center-box:0.4").invert_config(
    InvertConfig(inversion={"num_steps": 2, "loss": "mse"}))
PROBE = """
import json, sys
from typer.testing import CliRunner
from cli.app import app
results = {}
for expected, argv in json.loads(sys.argv[1]).items():
    result = CliRunner().invoke(app, argv)
    loaded = [name for name in ("torch", "prefect", "zarr") if name in sys.modules]
    results[expected] = [result.exit_code, result.output, loaded]
print(json.dumps(results))
"""


def _refusals(cases: dict[str, list[str]], folder: Path, env: dict[str, str] | None = None) -> dict[str, list]:
    """expected message -> [exit code, output, the modules of torch, prefect and zarr loaded so far] of each case's
    arguments, run in order in one fresh process in `folder` (with `env` added to the environment)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _count_checks(monkeypatch) -> list:
    """Each full settings check of this process (`check_settings` calls runtime.refine.check once)."""
    from runtime import refine

    checked, real = [], refine.check
    monkeypatch.setattr(refine, "check", lambda *a: checked.append(a) or real(*a))
    return checked


def test_mistakes_are_refused_before_torch_or_prefect_is_imported(tmp_path, tiny_generator_file):
    """Each refusal in one process, in order: the first that imported torch (or prefect: a server) is named."""
    write_good_images(tmp_path / "imgs", 2)
    prepare_store(tmp_path / "imgs", tmp_path / "made.zarr", tiny_generator_file,
                  InvertConfig(inversion={"num_steps": 4, "loss": "mse"}))
    prepare_store(tmp_path / "imgs", tmp_path / "restored.zarr", tiny_generator_file,
                  RestoreConfig(task="denoise", sigma=0.2).invert_config(InvertConfig(inversion={"num_steps": 4})))
    prepare_store(tmp_path / "imgs", tmp_path / "inpainted.zarr", tiny_generator_file, INPAINTED)
    for expected, (code, output, loaded) in _refusals(CASES, tmp_path).items():
        message = expected.split(" (")[0] if expected.startswith(MISSING) else expected
        shown = " ".join(output.replace("│", " ").split())  # typer's own usage errors come in a box
        assert code == 2 and message in shown, (expected, output)
        if not message.startswith("Invalid value"):  # ours: one line
            assert output.strip().splitlines()[-1].startswith("error: "), (expected, output)
        assert not {"torch", "prefect"} & set(loaded), f"{expected}: {loaded} imported before refusing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "inpainted.zarr", "made.zarr",
                                                          "restored.zarr"]  # nothing created


def test_images_with_no_image_are_refused_in_the_first_round_before_torch_zarr_or_prefect(tmp_path):
    """An empty folder (or one of other files only, an empty list file, a glob matching no image) was refused after
    the settings check, which loads torch (3-8 s); the preflight's first round refuses it (under a second), before
    any flag is compared with a store, as a missing folder is."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    (tmp_path / "list.txt").write_text("# no image yet\n\n")
    new = ["--store", "new.zarr"]
    empty_url = f"file://{tmp_path / 'empty'}"
    cases = {
        "invert": {"no image files in 'empty'": ["empty", *new, "--generator", "faces64"],
                   "no image files in 'notes'": ["notes", *new],
                   "no image files in 'list.txt'": ["list.txt", *new],
                   "no image files in 'notes/*.txt'": ["notes/*.txt", *new],
                   f"no image files in {empty_url!r}": [empty_url, *new]},
        "restore": {"no image files in 'empty'": ["empty", *new, "--task", "denoise"],
                    "no image files in 'notes'": ["notes", *new, "--task", "inpaint", "--mask-rule", "center-box"],
                    "no image files in 'list.txt'": ["list.txt", *new, "--task", "sharpen"]},  # before the task
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for command, arguments in cases.items():
        refusals = _refusals({expected: [command, *args] for expected, args in arguments.items()}, tmp_path)
        for expected, (code, output, loaded) in refusals.items():
            assert code == 2 and output.strip().splitlines()[-1].startswith(f"error: {expected}"), (command, output)
            assert loaded == [], f"{command} {expected}: {loaded} imported before refusing"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_a_bad_labels_file_is_refused_in_the_first_round_before_torch_zarr_or_prefect(tmp_path):
    """A labels file that does not read (a cell not a number, an image on two rows, not UTF-8, ...) was refused
    after the settings check had loaded torch (~3.5 s); the first round reads it with the scan's own parser, so the
    message is the scan's and nothing heavy has loaded."""
    write_good_images(tmp_path / "imgs", 1)
    (tmp_path / "word.csv").write_text("image_id,smiling\ngood000.png,yes\n")
    (tmp_path / "twice.csv").write_text("image_id,smiling\ngood000.png,1\ngood000.png,0\n")
    (tmp_path / "latin1.csv").write_bytes("image_id,smiling\ncafé.png,1\n".encode("latin-1"))
    (tmp_path / "header.csv").write_text("image_id\n")
    new = ["imgs", "--store", "new.zarr", "--labels"]
    cases = {
        "labels file word.csv, line 2, column 'smiling': 'yes' is not a number": [*new, "word.csv"],
        "labels file twice.csv: 1 images have more than one row ('good000.png' on lines [2, 3])": [*new, "twice.csv"],
        "labels file latin1.csv: not UTF-8 text": [*new, "latin1.csv"],
        "labels file header.csv: expected a header row": [*new, "header.csv"],
        f"labels file file://{tmp_path}/word.csv, line 2": [*new, f"file://{tmp_path}/word.csv"],
        "--labels 'gone.csv': no such file": [*new, "gone.csv"],
    }
    refusals = _refusals({expected: ["invert", *args] for expected, args in cases.items()}, tmp_path)
    for expected, (code, output, loaded) in refusals.items():
        assert code == 2 and output.strip().splitlines()[-1].startswith(f"error: {expected}"), output
        assert loaded == [], f"{expected}: {loaded} imported before refusing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["header.csv", "imgs", "latin1.csv", "twice.csv",
                                                          "word.csv"]  # nothing created
    good = tmp_path / "good.csv"
    good.write_text("image_id,smiling\ngood000.png,1\n")
    preflight.check_paths(str(tmp_path / "imgs"), str(tmp_path / "new.zarr"), str(good))  # a good file passes,
    # and the scan reads it the same way
    assert scan_images(str(tmp_path / "imgs"), labels=str(good)).manifest.items[0].labels == {"smiling": 1.0}


@pytest.fixture
def bucket(tmp_path):
    """memory://<unique>/ holding faces/ (two images), deep/a/b/c/ (one image), notes/ (a text file), list.txt
    (naming one image) and empty.txt; removed after."""
    fs = fsspec.filesystem("memory")
    root = f"/{tmp_path.name}"
    for i, path in enumerate(write_good_images(tmp_path / "imgs", 2)):
        fs.pipe(f"{root}/faces/{path.name}", path.read_bytes())
        if i == 0:
            fs.pipe(f"{root}/deep/a/b/c/{path.name}", path.read_bytes())
    fs.pipe(f"{root}/notes/todo.txt", b"x")
    fs.pipe(f"{root}/list.txt", b"# one\nfaces/good000.png\n")
    fs.pipe(f"{root}/empty.txt", b"# none yet\n")
    yield f"memory://{tmp_path.name}"
    fs.rm(root, recursive=True)


def test_images_in_a_bucket_are_checked_in_the_first_round_as_the_scan_lists_them(bucket, tmp_path):
    """A bucket's IMAGES (any fsspec URL; memory:// here) with no image, or not there, were found only by the flow's
    scan, after the servers started; the first round refuses them as it refuses local ones."""
    store = str(tmp_path / "new.zarr")
    for found in ("faces", "deep", "list.txt", "faces/*.png", "*/*.png", "deep/**/*.png"):
        preflight.check_paths(f"{bucket}/{found}", store, None)
        assert scan_images(f"{bucket}/{found}").manifest.items  # what the scan lists too
    for empty in ("notes", "empty.txt", "faces/*.jpg"):
        with pytest.raises(NoImagesError, match=re.escape(f"no image files in '{bucket}/{empty}'")):
            preflight.check_paths(f"{bucket}/{empty}", store, None)
        with pytest.raises(NoImagesError):
            scan_images(f"{bucket}/{empty}")
    with pytest.raises(preflight.InputNotFound, match=re.escape(f"IMAGES '{bucket}/nothere' does not exist")):
        preflight.check_paths(f"{bucket}/nothere", store, None)
    with pytest.raises(preflight.InputNotFound, match="the glob matches no file"):
        preflight.check_paths(f"{bucket}/nothere/*.png", store, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # nothing created


def test_a_bucket_is_looked_into_for_a_few_listings_not_walked_whole(bucket, monkeypatch):
    """A bucket prefix is listed one folder at a time until its first image; one with many folders and no image
    among the first `BUCKET_FOLDERS` is left to the scan (not known to be empty) after that many listings; a glob's
    folders are listed no deeper than its pattern reaches."""
    fs = fsspec.filesystem("memory")
    many = f"{bucket}/many"
    for i in range(3 * listing.BUCKET_FOLDERS):
        fs.pipe(f"{fs._strip_protocol(many)}/{i:03d}/notes.txt", b"x")
    fs.pipe(f"{fs._strip_protocol(many)}/{3 * listing.BUCKET_FOLDERS - 1:03d}/good.png", b"x")
    listed, real_ls = [], type(fs).ls
    monkeypatch.setattr(type(fs), "ls", lambda self, path, *a, **k: listed.append(path) or real_ls(self, path, *a, **k))
    preflight.check_paths(many, "new.zarr", None)
    assert len(listed) == listing.BUCKET_FOLDERS
    listed.clear()
    preflight.check_paths(f"{bucket}/faces", "new.zarr", None)  # the first listing holds an image
    assert len(listed) == 1
    listed.clear()
    with pytest.raises(NoImagesError):  # a glob is not looked for below its last folder
        preflight.check_paths(f"{many}/*.png", "new.zarr", None)
    assert len(listed) == 1
    with pytest.raises(NoImagesError):
        scan_images(f"{many}/*.png")


class _DeniedFileSystem(fsspec.implementations.memory.MemoryFileSystem):
    """A bucket whose listings are refused, as S3 refuses a caller without the right (s3fs: PermissionError)."""

    protocol = "denied"

    def info(self, path, **kwargs):
        raise PermissionError(f"Access Denied: {path}")

    ls = info


def test_a_bucket_that_cannot_be_read_is_refused_naming_the_input(bucket, tmp_path):
    """No package for the URL's protocol, an unknown protocol, a listing refused: one line naming IMAGES (or
    --labels) and the filesystem's reason, not a traceback after the servers started."""
    fsspec.register_implementation("denied", _DeniedFileSystem, clobber=True)
    store = str(tmp_path / "new.zarr")
    cases = {"denied://bucket/faces": "PermissionError: Access Denied",
             "nosuch://bucket/faces": "ValueError: Protocol not known"}
    if importlib.util.find_spec("gcsfs") is None:
        cases["gs://bucket/faces"] = "ImportError: Please install gcsfs"
    for images, reason in cases.items():
        with pytest.raises(preflight.InputUnreadable, match=f"IMAGES '{images}': cannot read it \\({reason}"):
            preflight.check_paths(images, store, None)
    with pytest.raises(preflight.InputUnreadable, match="--labels 'nosuch://b/l.csv': cannot read it"):
        preflight.check_paths(f"{bucket}/faces", store, "nosuch://b/l.csv")
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{fs._strip_protocol(bucket)}/labels.csv", b"image_id,smiling\ngood000.png,yes\n")
    with pytest.raises(LabelsError, match="'yes' is not a number"):
        preflight.check_paths(f"{bucket}/faces", store, f"{bucket}/labels.csv")


def test_s3_images_are_refused_in_the_first_round_before_torch_zarr_or_prefect(s3_endpoint, tmp_path):
    """Through s3fs against an S3 server (moto): a prefix with no image, a bucket that is not there, no credentials
    are refused by the CLI in the first round, with nothing heavy loaded; a prefix with an image passes it."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    prefix = f"first-round-{tmp_path.name}"
    s3.put_object(Bucket="ganinv", Key=f"{prefix}/notes/todo.txt", Body=b"x")
    s3.put_object(Bucket="ganinv", Key=f"{prefix}/faces/good000.png", Body=b"x")
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    new = ["--store", "new.zarr"]
    faces = ["invert", f"s3://ganinv/{prefix}/faces", *new]
    cases = {f"no image files in 's3://ganinv/{prefix}/notes'": ["invert", f"s3://ganinv/{prefix}/notes", *new],
             "IMAGES 's3://no-such-bucket/faces' does not exist": ["invert", "s3://no-such-bucket/faces", *new],
             "--labels 'gone.csv': no such file": [*faces, "--labels", "gone.csv"]}  # IMAGES passed, labels next
    no_credentials = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true",
                      "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    refused = {**_refusals(cases, tmp_path, env), **_refusals(
        {f"IMAGES 's3://ganinv/{prefix}/faces': cannot read it (NoCredentialsError": faces}, tmp_path,
        {**env, **no_credentials})}
    for expected, (code, output, loaded) in refused.items():
        assert code == 2 and output.strip().splitlines()[-1].startswith(f"error: {expected}"), output
        assert not {"torch", "prefect", "zarr"} & set(loaded), f"{expected}: {loaded} imported before refusing"


def test_a_file_url_of_local_images_passes_the_first_round(tmp_path):
    """IMAGES as a file:// URL is read as its local path (it was refused as missing), and a folder whose name has
    glob characters is the folder, as the scan reads them."""
    write_good_images(tmp_path / "imgs", 1)
    write_good_images(tmp_path / "set[1]", 1)
    for images in (f"file://{tmp_path / 'imgs'}", f"file://{tmp_path / 'imgs'}/*.png", str(tmp_path / "set[1]")):
        preflight.check_paths(images, str(tmp_path / "s.zarr"), None)
        assert len(scan_images(images).manifest) == 1  # what the scan lists too
    with pytest.raises(preflight.InputNotFound, match="does not exist"):
        preflight.check_paths(f"file://{tmp_path / 'nothere'}", str(tmp_path / "s.zarr"), None)


def test_the_names_checked_without_torch_are_those_the_torch_registries_act_on():
    """One home per name: the torch-free lists the CLI refuses by are the registries' own keys and tasks."""
    from ganinv import inversion_names as names
    from ganinv.inversion.degradations import TASKS, Downsample, task_config
    from ganinv.inversion.masks import CenterBox
    from ganinv.losses.registry import LOSSES

    assert sorted(LOSSES) == sorted(names.LOSS_NAMES) and set(names.PIXEL_LOSSES) <= set(LOSSES)
    assert TASKS == names.RESTORATION_TASKS
    for task in names.RESTORATION_TASKS:  # each has its degradation (an unknown task raises ValueError)
        assert task_config(task, mask_source=CenterBox(0.4), factor=2, sigma=0.1)["kind"]
    for factor in names.SUPER_RESOLUTION_FACTORS:  # each divides a generator's (power-of-two) size
        Downsample(factor).check(1, (3, 1024, 1024))
    with pytest.raises(ValueError, match="divides by 3"):
        Downsample(3).check(1, (3, 1024, 1024))


def test_a_loss_given_in_another_spelling_of_the_stores_is_not_refused(tmp_path, tiny_generator_file):
    """The store records the canonical spec; the record is compared with the flag's canonical spelling."""
    from storage import LatentStore, StoreMismatchError

    write_good_images(tmp_path / "imgs", 1)
    prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file,
                  InvertConfig(inversion={"num_steps": 2, "loss": "mse+0.5*l1"}))
    store = LatentStore.open(str(tmp_path / "s.zarr"), "r")
    preflight._refuse_changed_flags(store, {"inversion": {"loss": " 1.0*mse + 0.50*l1"}})
    with pytest.raises(StoreMismatchError, match="stored 'mse\\+0.5\\*l1', given 'mse\\+0.25\\*l1'"):
        preflight._refuse_changed_flags(store, {"inversion": {"loss": "mse+0.25*l1"}})


def test_betas_a_record_leaves_out_compare_as_the_projectors(tmp_path, tiny_generator_file):
    """A store made with the projector's betas records none (as stores made before `--betas` existed); giving them
    is a rerun, through the whole preflight, and other betas are refused from the record alone."""
    from storage import LatentStore, StoreMismatchError

    write_good_images(tmp_path / "imgs", 1)
    prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file,
                  InvertConfig(inversion={"num_steps": 2, "loss": "mse"}))
    store = LatentStore.open(str(tmp_path / "s.zarr"), "r")
    assert "betas" not in store.attributes.inversion["inversion"]
    given = InvertConfig(inversion={"betas": " 0.9, 0.999"})
    assert given.inversion["betas"] == (0.9, 0.999)
    preflight._refuse_changed_flags(store, {"inversion": given.inversion})
    resolved = preflight.resolve(str(tmp_path / "imgs"), str(tmp_path / "s.zarr"), None, given,
                                 {"inversion": given.inversion}, force=False)
    assert resolved.config.inversion["betas"] == (0.9, 0.999)
    with pytest.raises(StoreMismatchError, match=r"betas: stored \[0.9, 0.999\], given \[0.5, 0.9\]"):
        preflight._refuse_changed_flags(store, {"inversion": {"betas": (0.5, 0.9)}})


def test_a_mask_rule_in_another_spelling_of_the_stores_is_a_rerun_and_another_rule_is_refused_before_torch(
        tmp_path, tiny_generator_file):
    """The store records center-box:0.4; `--mask-rule center-box` is that rule at its default: a rerun, through the
    whole preflight (the record it makes is the store's). Another area is refused from the record alone."""
    from storage import LatentStore, StoreMismatchError

    write_good_images(tmp_path / "imgs", 1)
    prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file, INPAINTED)
    store = LatentStore.open(str(tmp_path / "s.zarr"), "r")
    for spelling in ("center-box", "center-box:.40", "center-box:0.4"):
        assert preflight.restoration_config(store, store.url, {"mask_rule": spelling}).record() == \
            store.attributes.inversion["restoration"]
    resolved = preflight.resolve(str(tmp_path / "imgs"), store.url, None, InvertConfig(), {"inversion": {}},
                                 force=False, restore={"mask_rule": "center-box"})
    assert resolved.restoration.record() == store.attributes.inversion["restoration"]
    with pytest.raises(StoreMismatchError, match="restoration.mask_rule: stored 'center-box:0.4', given "
                                                 "'center-box:0.25'"):
        preflight.restoration_config(store, store.url, {"mask_rule": "center-box:0.25"})


def test_settings_kept_by_the_preflight_are_taken_once_and_a_replaced_generator_is_checked_again(
        tmp_path, tiny_generator_file, monkeypatch):
    checked = _count_checks(monkeypatch)
    config = InvertConfig(inversion={"num_steps": 2, "loss": "mse"})
    settings = coordinator.check_settings(tiny_generator_file, config)
    coordinator.keep_checked(tiny_generator_file, config, settings)
    assert coordinator.check_settings(tiny_generator_file, config) is settings and len(checked) == 1  # the flow's
    coordinator.check_settings(tiny_generator_file, config)  # a flow started otherwise (a deployment) checks
    assert len(checked) == 2
    coordinator.keep_checked(tiny_generator_file, config, settings)
    coordinator.check_settings(tiny_generator_file, InvertConfig(inversion={"num_steps": 3, "loss": "mse"}))
    assert len(checked) == 3  # other settings: checked
    copy = tmp_path / "g.safetensors"
    copy.write_bytes(Path(tiny_generator_file).read_bytes())
    coordinator.keep_checked(str(copy), config, coordinator.check_settings(str(copy), config))
    os.utime(copy, ns=(0, 0))  # replaced after the preflight's check
    coordinator.check_settings(str(copy), config)
    assert len(checked) == 5


def test_a_cli_run_checks_its_settings_once_and_shows_the_scan(prefect_harness, dask_cluster, tiny_generator_file,
                                                               tmp_path, monkeypatch):
    """The preflight checked the settings (loading the generator, hashing an encoder); the flow's step 0 took them
    (twice before). Off a terminal, the scan prints its start and end as the other long steps do."""
    checked = _count_checks(monkeypatch)
    imgs = tmp_path / "imgs"
    write_good_images(imgs, 3)
    result = CliRunner().invoke(app, ["invert", str(imgs), "--store", str(tmp_path / "s.zarr"), "--generator",
                                      tiny_generator_file, "--steps", "2", "--loss", "mse",
                                      "--cluster", dask_cluster[0].scheduler_address])
    assert result.exit_code == 0, result.output
    assert len(checked) == 1
    assert f"scanning {imgs}: 0/3" in result.output and f"scanning {imgs}: 3/3" in result.output


def test_the_scan_reports_each_file_it_hashes_and_those_it_reuses_at_once(tmp_path):
    write_good_images(tmp_path, 5)
    first = scan_images(str(tmp_path))
    (tmp_path / "good001.png").write_bytes((tmp_path / "good000.png").read_bytes() + b"changed")
    events: list[dict] = []
    with progress.listening(events.append):
        scan_images(str(tmp_path), previous=first.hash_cache, progress=lambda n: progress.step("scanning", n))
    seen = [(e["done"], e["total"]) for e in events if e["event"] == "step"]
    assert seen[0] == (0, 5) and seen[1] == (4, 5) and seen[-1] == (5, 5) and len(seen) == 3  # 4 reused, 1 read


def test_the_preflight_does_not_list_a_whole_folder_to_find_an_image(tmp_path, monkeypatch):
    """A folder is looked into only until its first image (the flow's scan lists it, with its progress shown);
    what counts as an image is what the scan lists."""
    from storage import listing

    write_good_images(tmp_path / "a" / "b", 1)
    write_good_images(tmp_path / ".hidden", 1)
    write_good_images(tmp_path / "c" / ".x", 1)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".good000.png").write_bytes(b"")
    (tmp_path / "d" / "notes.txt").write_text("x")
    expected = {name: bool(listing.list_images(str(tmp_path / name))[2]) for name in "acd"}
    assert expected == {"a": True, "c": False, "d": False}

    def no_listing(*args, **kwargs):
        raise AssertionError("the whole folder was listed")

    monkeypatch.setattr(listing, "list_images", no_listing)
    monkeypatch.setattr(listing, "list_entries", no_listing)
    for name, found in expected.items():
        if found:
            preflight._check_images(str(tmp_path / name))
        else:
            with pytest.raises(listing.NoImagesError):
                preflight._check_images(str(tmp_path / name))


@pytest.mark.parametrize(("modules", "heavy"), [
    ("storage.listing, storage.errors, cli.preflight", ("zarr", "torch", "prefect")),  # the first round's
    ("storage.labels", ("zarr", "torch", "prefect", "PIL")),  # what the first round reads the labels with
    ("storage.scan", ("torch", "prefect", "PIL")),  # the flow's scan, which reads them with storage.labels too
])
def test_the_preflights_imports_load_no_heavy_library(modules, heavy):
    """The preflight's first round asks the scan's listing module whether IMAGES hold an image and reads the labels
    with the scan's labels parser: they load neither zarr (the `storage` package names its modules' classes lazily,
    PEP 562; it loaded zarr) nor torch nor prefect; the scan itself loads no torch or prefect (its hash cache loads
    zarr)."""
    code = (f"import json, sys; import {modules}; "
            f"print(json.dumps(sorted(set({list(heavy)!r}) & set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
