"""Refusals before anything heavy loads (issue 19, items 3 and 9): a store made with other settings (a loss too; a
restoration store's restoration too, its mask rule in any spelling), a misspelt mode, loss or restoration task, a
super-resolution factor no generator's size divides, another task's setting (even at its default), inpainting
without masks or with two kinds, a mask rule or hole colour not understood, a missing store or mask folder, IMAGES
with no image, a labels file that does not read are refused without importing torch or prefect (in well under a
second, where they took 3 to 30 s); the settings a CLI run checked are not checked again by its flow; the scan shows
its progress, and a refinement's bar says "refining". The names checked without torch are those the torch-side
registries use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _flow_helpers import prepare_store
from _image_files import write_good_images
from cli import preflight
from cli.app import app
from runtime import coordinator, progress
from runtime.config import InvertConfig, RestoreConfig
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


def _refusals(cases: dict[str, list[str]], folder: Path) -> dict[str, list]:
    """expected message -> [exit code, output, the modules of torch, prefect and zarr loaded so far] of each case's
    arguments, run in order in one fresh process in `folder`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
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
