"""The `ganinv` command."""
import typer

app = typer.Typer(no_args_is_help=True, help="Invert image datasets into a StyleGAN2 latent space.")


@app.command("make-dataset")
def make_dataset(
    out: str = typer.Argument(..., help="Output folder: writes OUT/images/NNNNNN.png and OUT/attributes.csv."),
    n: int = typer.Option(10000, "--n", help="Number of faces."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed and index always give the same face."),
    workers: int = typer.Option(None, "--workers", help="Processes (default: all CPUs)."),
    start: int = typer.Option(0, "--start", help="First face index (to build one dataset in several runs)."),
) -> None:
    """Render the procedural-faces dataset (a small world whose attributes are all known)."""
    import time
    from ganinv.datasets.procedural_faces import write_dataset

    t0 = time.perf_counter()
    csv_path = write_dataset(out, n, seed=seed, workers=workers, start=start)
    seconds = time.perf_counter() - t0
    typer.echo(f"wrote {n} faces to {out} ({n / max(seconds, 1e-9):.0f} images/s); attributes: {csv_path}")


@app.command("train-classifier")
def train_classifier_cmd(
    out: str = typer.Option(..., "--out", help="Where to write the .safetensors classifier."),
    n_train: int = typer.Option(16000, "--n-train", help="Training faces (rendered once, reused with augmentation)."),
    steps: int = typer.Option(2400, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="World seed of the training faces."),
    eval_seed: int = typer.Option(1, "--eval-seed", help="World seed of the held-out faces."),
    n_eval: int = typer.Option(2000, "--n-eval", help="Held-out faces."),
    dataset: str = typer.Option(None, "--dataset", help="Train on a make-dataset folder instead of rendering."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
) -> None:
    """Train the attribute classifier of the procedural-faces world and report held-out accuracy / R^2."""
    import json
    import logging
    from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainClassifierConfig(seed=seed, n_train=n_train, eval_seed=eval_seed, n_eval=n_eval, steps=steps,
                                batch_size=batch_size, dataset_dir=dataset, threads=threads)
    record = train_classifier(cfg, out)
    typer.echo(json.dumps({"heldout": record["heldout"], "passes": record["passes"],
                           "train_seconds": record["train_seconds"]}, indent=1))
