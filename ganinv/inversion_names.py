"""The names an inversion's settings are picked by (`--mode`, `--space`, `--precision`, `--loss`, restore's `--task`,
`--factor`, `--mask-holes` and `--mask-rule`): their one home, kept free of torch (as `ganinv.builtin_models` is) so
that a command refuses a misspelt name in a fraction of a second, before it imports torch. The modules that act on
them (`ganinv.inversion.batch`, `ganinv.inversion.optimize`, `ganinv.utils.precision`, `ganinv.losses.registry`,
`ganinv.inversion.degradations`, `ganinv.inversion.masks`) import them from here."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MODES = ("optimize", "encoder", "hybrid")  # how a batch is inverted: ganinv/inversion/batch.py
SPACES = ("z", "w", "w+")                  # where the optimisation runs: ganinv/inversion/optimize.py
PRECISIONS = ("fp32", "bf16")              # autocast or not: ganinv/utils/precision.py
# Adam's betas (`--betas`) by default: the StyleGAN2 projector's. Stores made before `InversionConfig.betas` existed
# used them and record none, so a record leaves them out when they are these (`RECORD_DEFAULTS`).
PROJECTOR_BETAS = (0.9, 0.999)
# the inversion fields a store's record leaves out at these values (`InversionConfig.to_dict`), so that records made
# before the field existed still match; compare records with them filled in (`with_record_defaults`)
RECORD_DEFAULTS: Mapping[str, Any] = {"betas": PROJECTOR_BETAS}

# the per-image losses a loss spec combines (`'lpips-vgg+0.1*mse'`): ganinv/losses/registry.py builds them
LOSS_NAMES = ("mse", "l1", "lpips-vgg", "lpips-alex", "clf-perceptual")
PIXEL_LOSSES = ("mse", "l1")
_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9.eE\-]+)\s*\*\s*)?(?P<name>[a-z0-9\-]+)\s*$")

# restoration tasks (`ganinv restore --task`) -> the settings only they take (`RestoreConfig` fields; a task refuses
# another's): ganinv/inversion/degradations.py makes their degradations
RESTORATION_OPTIONS = {
    "inpaint": ("mask_dir", "mask_holes", "mask_rule", "mask_seed"),
    "super-resolution": ("factor",),
    "colorize": (),
    "denoise": ("sigma",),
}
RESTORATION_TASKS = tuple(RESTORATION_OPTIONS)
# super-resolution's `--factor`: a power of two, since every generator's resolution is one (StyleGAN2 requires it,
# StyleGAN3 is trained on power-of-two datasets) and no other factor divides it; that it divides the generator's own
# resolution is checked once the generator loads (runtime/restore.py)
SUPER_RESOLUTION_FACTORS = tuple(2 ** k for k in range(1, 11))  # 2 ... 1024
# inpainting's masks (`--mask-holes`, `--mask-rule`): ganinv/inversion/masks.py makes them
MASK_HOLES = ("white", "black")  # the colour that marks a hole in a folder's mask PNGs
CENTER_BOX_AREA = 0.4            # `center-box`: one centred square hole, this fraction of the image
RANDOM_BOXES_COUNT = 3           # `random-boxes`: this many holes per image
# `--mask-rule KIND[:VALUE]`: the mask source's field that VALUE sets, and its default
MASK_RULES = {"center-box": ("area", CENTER_BOX_AREA), "random-boxes": ("count", RANDOM_BOXES_COUNT)}
MASK_RULE_FORM = "'center-box[:AREA]' (e.g. center-box:0.4) or 'random-boxes[:COUNT]' (e.g. random-boxes:3)"


def parse_loss_spec(spec: str | Sequence[str]) -> tuple[tuple[float, str], ...]:
    """`'lpips-vgg+0.1*mse'` or `['lpips-vgg', '0.1*mse']` -> `((1.0, 'lpips-vgg'), (0.1, 'mse'))`; ValueError
    naming a term that is not understood."""
    parts = spec.split("+") if isinstance(spec, str) else [p for s in spec for p in s.split("+")]
    terms = []
    for part in parts:
        match = _TERM.match(part)
        if match is None or match["name"] not in LOSS_NAMES:
            raise ValueError(f"loss term {part!r} in {spec!r} is not understood: write '[weight*]name' terms joined "
                             f"by '+', names from {sorted(LOSS_NAMES)} (e.g. 'lpips-vgg+0.1*mse')")
        try:
            weight = float(match["weight"]) if match["weight"] else 1.0
        except ValueError:
            raise ValueError(f"loss weight {match['weight']!r} in {spec!r} is not a number") from None
        terms.append((weight, match["name"]))
    if not terms:
        raise ValueError(f"loss spec {spec!r} names no loss; choose from {sorted(LOSS_NAMES)}")
    return tuple(terms)


def parse_betas(text: str | Sequence[float]) -> tuple[float, float]:
    """`'0.7,0.7'` (or two numbers) -> `(0.7, 0.7)`: Adam's two betas, each in [0, 1); ValueError saying what is
    wrong."""
    parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    try:
        betas = tuple(float(b) for b in parts)
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas {text!r}: give Adam's two betas, each in [0, 1), as 'B1,B2' (e.g. 0.9,0.999, the "
                         "projector's, or 0.7,0.7, the hybrid preset's)")
    return betas


def with_record_defaults(inversion: Mapping[str, Any]) -> dict[str, Any]:
    """An inversion record (`InversionConfig.to_dict`, or one a store keeps) with the fields it may leave out
    filled in (`RECORD_DEFAULTS`), in the record's JSON form: how two records, or a record and flags, compare."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in {**RECORD_DEFAULTS, **inversion}.items()}


def canonical_loss_spec(spec: str | Sequence[str]) -> str:
    """One spelling per loss (`'lpips-vgg+0.1*mse'`), the form saved in configs (and in a store's record)."""
    return "+".join(name if weight == 1 else f"{weight:g}*{name}" for weight, name in parse_loss_spec(spec))


def mask_rule_config(rule: str, *, seed: int = 0, name: str = "mask rule") -> dict[str, Any]:
    """A `--mask-rule` -> the config of the mask source it names (`ganinv.inversion.masks.mask_source_from_config`
    makes the source): 'center-box[:AREA]' -> {'kind': 'center-box', 'area': AREA}, 'random-boxes[:COUNT]' ->
    {'kind': 'random-boxes', 'count': COUNT, 'seed': seed}, a value left out at its default. ValueError naming the
    rule (as `name` and its value) and the form rules take, for one not understood or a value out of range."""
    kind, _, text = rule.partition(":")
    not_understood = ValueError(f"{name} {rule!r} is not understood: write {MASK_RULE_FORM}")
    if kind not in MASK_RULES:
        raise not_understood
    field, default = MASK_RULES[kind]
    try:
        value = type(default)(text) if text else default
    except ValueError:
        raise not_understood from None
    problem = mask_rule_value_problem(kind, value)
    if problem:
        raise ValueError(f"{name} {rule!r}: {problem}; write {MASK_RULE_FORM}")
    return {"kind": kind, field: value, **({"seed": seed} if kind == "random-boxes" else {})}


def mask_rule_value_problem(kind: str, value: float) -> str | None:
    """Why `value` cannot be the value of the rule `kind` (center-box's area, random-boxes' count), or None; the mask
    sources refuse by it too."""
    if kind == "center-box" and not 0 < value < 1:
        return f"center-box area must be a fraction in (0, 1), got {value!r}"
    if kind == "random-boxes" and value < 1:
        return f"random-boxes count must be at least 1, got {value!r}"
    return None


def mask_rule_spelling(source: Mapping[str, Any]) -> str:
    """The one spelling of the rule that made a mask source (its config, as `mask_rule_config` gives it or a store
    records it): 'center-box:0.4', 'random-boxes:3' (the seed is restore's `mask_seed`, not part of the rule)."""
    field, _ = MASK_RULES[source["kind"]]
    return f"{source['kind']}:{source[field]}"


def canonical_mask_rule(rule: str) -> str:
    """One spelling per rule ('center-box' and 'center-box:.40' -> 'center-box:0.4'): what a rerun's `--mask-rule`
    is compared with a store's record in. ValueError as `mask_rule_config`."""
    return mask_rule_spelling(mask_rule_config(rule, name="--mask-rule"))


def mask_problem(settings: Mapping[str, Any]) -> str | None:
    """Why the `--mask-holes` or `--mask-rule` in `settings` (`RestoreConfig` fields, name -> value) is not
    understood, or None."""
    holes = settings.get("mask_holes")
    if holes is not None and holes not in MASK_HOLES:
        return (f"--mask-holes {holes!r} is not understood: write {' or '.join(MASK_HOLES)} (the colour that marks "
                "a hole in the mask PNGs)")
    rule = settings.get("mask_rule")
    if rule is not None:
        try:
            mask_rule_config(rule, name="--mask-rule")
        except ValueError as err:
            return str(err)
    return None


def restoration_problem(task: str, settings: Mapping[str, Any]) -> str | None:
    """Why `task` with `settings` (the `RestoreConfig` fields set, name -> value: those given on the command line,
    or those changed from their defaults) cannot be restored, or None: a mask rule or hole colour not understood
    (`mask_problem`), then what `task_settings_problem` finds."""
    return mask_problem(settings) or task_settings_problem(task, settings)


def task_settings_problem(task: str, settings: Mapping[str, Any]) -> str | None:
    """Why `task` with `settings` whose mask flags are understood (`mask_problem`: the CLI asks it first, before it
    compares the flags with a store's record) cannot be restored, or None: an unknown task, another task's setting
    (`--factor` for colorize would be ignored, even `--factor 4`, the default), a factor no generator's size divides,
    inpainting without masks or with masks from a folder and a rule at once."""
    if task not in RESTORATION_TASKS:
        return f"unknown restoration task {task!r}; choose from {list(RESTORATION_TASKS)}"
    for name in settings:
        owner = next((t for t, options in RESTORATION_OPTIONS.items() if name in options and t != task), None)
        if owner and name not in RESTORATION_OPTIONS[task]:
            flag = "--" + name.replace("_", "-")
            return f"task {task!r} takes no {flag} ({flag} is for {owner!r}): leave it out"
    factor = settings.get("factor")
    if task == "super-resolution" and factor is not None and factor not in SUPER_RESOLUTION_FACTORS:
        return (f"super-resolution factor {factor!r} is not a power of two from 2 to {SUPER_RESOLUTION_FACTORS[-1]}: "
                "a generator's images (a power of two in size) must divide by it")
    masks = [name for name in ("mask_dir", "mask_rule") if settings.get(name) is not None]
    if task == "inpaint" and not masks:
        return "task 'inpaint' needs masks: a folder of mask PNGs (--mask-dir) or a mask rule (--mask-rule)"
    if len(masks) == 2:
        return "give masks as a folder (--mask-dir) or a rule (--mask-rule), not both"
    return None
