"""Commands on generators: `info`, `generate`, `convert-pkl`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli.common import SEEDS_HELP, floats, parse_seeds
from cli.errors import InputNotFound

app = typer.Typer()
MODEL = typer.Argument(..., help="A generator file (.pkl or .safetensors) or a built-in name.")


def _known(model: str) -> str:
    """`model`, once it is an existing file or a built-in name (checked before torch is imported: exit 2 at once)."""
    from ganinv.builtin_models import unknown_generator

    reason = unknown_generator(model)
    if reason:
        raise InputNotFound(reason)
    return model


@app.command()
def info(model: str = MODEL,
         as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Show a generator's architecture (stylegan2, stylegan3-t/-r), config, num_ws, parameter count and identity."""
    _known(model)
    from ganinv.generators import load_generator_and_identity

    G, identity = load_generator_and_identity(model)
    summary = dict(model=model, architecture=G.architecture, config=G.init_kwargs, img_resolution=G.img_resolution,
                   z_dim=G.z_dim, w_dim=G.w_dim, c_dim=G.c_dim, num_ws=G.num_ws,
                   num_parameters=sum(p.numel() for p in G.parameters()), identity=identity)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    summary.update(config=json.dumps(summary["config"], sort_keys=True), num_parameters=f"{summary['num_parameters']:,}")
    for key, value in summary.items():
        typer.echo(f"{key:15s} {value}")


@app.command()
def generate(
    model: str = MODEL,
    seeds: str = typer.Option("0-15", help=SEEDS_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", "--trunc",
                                         help="Truncation psi (1 = none, 0 = the average face)."),
    out: Path = typer.Option(Path("grid.png"), help="Output image (PNG)."),
    class_idx: Optional[int] = typer.Option(None, help="Class label, for conditional generators."),
    noise_mode: str = typer.Option("const", help="Noise inputs: const, random or none (StyleGAN3 has none)."),
    translate: str = typer.Option("0,0", "--translate", help="StyleGAN3: move the input grid by X,Y image widths "
                                  "(as gen_images.py --translate)."),
    rotate: float = typer.Option(0.0, "--rotate", help="StyleGAN3: rotate the input grid by DEG degrees."),
    nrow: Optional[int] = typer.Option(None, help="Images per row (default: a near-square grid)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... or auto."),
) -> None:
    """Render a grid of images, one per seed (z drawn as in the official generate.py / gen_images.py, so seeds
    match them)."""
    _known(model)
    from ganinv.errors import UserError
    from ganinv.generate import generate_images
    from ganinv.generators import load_generator
    from ganinv.utils.images import save_image_grid
    from runtime.models import resolve_device

    shift = floats(translate, "--translate")
    if shift is None or len(shift) != 2:
        raise typer.BadParameter(f"{translate!r}: give X,Y in image widths, e.g. 0.1,-0.2", param_hint="--translate")
    seed_list = parse_seeds(seeds)
    G = load_generator(model, device=resolve_device(device))
    if G.c_dim > 0 and (class_idx is None or not 0 <= class_idx < G.c_dim):
        raise typer.BadParameter(f"this generator is conditional: pass --class-idx between 0 and {G.c_dim - 1}")
    if G.c_dim == 0 and class_idx is not None:
        typer.echo("warning: --class-idx is ignored: the generator is unconditional", err=True)
        class_idx = None
    try:
        images = generate_images(G, seed_list, truncation_psi=truncation_psi, class_idx=class_idx,
                                 noise_mode=noise_mode, translate=shift, rotate=rotate)
    except ValueError as err:  # a transform for a StyleGAN2 generator, which has none
        raise UserError(f"generate {model}: {err}") from None
    save_image_grid(images, out, nrow)
    typer.echo(f"wrote {out} ({len(seed_list)} images, {G.img_resolution} px, {G.architecture})")


@app.command("convert-pkl")
def convert_pkl(
    pkl: Path = typer.Argument(..., help="An official StyleGAN2-ADA / StyleGAN3-repo network pickle."),
    out: Path = typer.Argument(..., help="Where to write the ganinv generator (.safetensors)."),
) -> None:
    """Convert an official network pickle (G_ema) to ganinv's safetensors format, running none of its code."""
    import hashlib

    from ganinv.generators import load_generator, read_generator_metadata, save_generator

    G = load_generator(pkl)
    with open(pkl, "rb") as f:
        pkl_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    save_generator(G, out, source=pkl.name, extra_metadata={"source_sha256": pkl_sha256})
    identity = read_generator_metadata(out)["identity"]  # hashed once, by save_generator
    typer.echo(f"wrote {out} (identity {identity})")
