"""Commands on generators: `info`, `generate`, `convert-pkl`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli.common import SEEDS_HELP, parse_seeds
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
    noise_mode: str = typer.Option("const", help="Noise inputs: const, random or none."),
    nrow: Optional[int] = typer.Option(None, help="Images per row (default: a near-square grid)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... or auto."),
) -> None:
    """Render a grid of images, one per seed (z drawn as in the official generate.py, so seeds match it)."""
    _known(model)
    import numpy as np
    import torch

    from ganinv.generators import load_generator
    from ganinv.utils.images import save_image_grid
    from runtime.models import resolve_device

    seed_list = parse_seeds(seeds)
    G = load_generator(model, device=resolve_device(device))
    c = torch.zeros([len(seed_list), G.c_dim], device=G.mapping.fc0.weight.device)
    if G.c_dim > 0:
        if class_idx is None or not 0 <= class_idx < G.c_dim:
            raise typer.BadParameter(f"this generator is conditional: pass --class-idx between 0 and {G.c_dim - 1}")
        c[:, class_idx] = 1
    elif class_idx is not None:
        typer.echo("warning: --class-idx is ignored: the generator is unconditional", err=True)
    z = torch.from_numpy(np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in seed_list])).to(c)
    with torch.no_grad():
        images = torch.cat([G(z[i:i + 16], c[i:i + 16], truncation_psi=truncation_psi, noise_mode=noise_mode)
                            for i in range(0, len(seed_list), 16)])
    save_image_grid(images, out, nrow)
    typer.echo(f"wrote {out} ({len(seed_list)} images, {G.img_resolution} px)")


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
