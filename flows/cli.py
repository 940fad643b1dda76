"""The `ganinv` command."""
import typer

app = typer.Typer(no_args_is_help=True, help="Invert image datasets into a StyleGAN2 latent space.")
