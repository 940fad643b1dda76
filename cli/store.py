"""Commands on a latent store: `store-info`, `store-verify`, `store-rebuild-root`, `store-break-lease`."""

from __future__ import annotations

import json

import typer

app = typer.Typer()
STORE = typer.Argument(..., help="Store path or fsspec URL (s3://bucket/corpus.zarr).")


def open_store(store: str, mode: str = "r"):
    from storage import LatentStore

    return LatentStore.open(store, mode)


@app.command("store-info")
def store_info(store: str = STORE,
               as_json: bool = typer.Option(False, "--json", help="Print the root attributes and counts as JSON.")
               ) -> None:
    """Summary of a latent store: items done/failed/pending, generator identity, inversion config, lease."""
    from runtime.describe import stage_lines

    s = open_store(store)
    attrs, counts, holder = s.attributes, s.status_counts(), s.lease_holder()
    if as_json:
        typer.echo(json.dumps({"attributes": attrs.to_json(), "counts": counts,
                               "lease": holder.to_json() if holder else None}, indent=2))
        return
    layout, gen, ds = attrs.layout, attrs.generator, attrs.dataset
    optional = [name for name, on in (("z", layout.z_dim), ("thumbnails", layout.thumbnail_size)) if on]
    typer.echo("\n".join([
        f"store       {store}",
        f"schema      {attrs.schema} v{attrs.schema_version}, created {attrs.created} by ganinv {attrs.ganinv_version}",
        f"items       {len(s)}: done {counts['done']}, failed {counts['failed']}, pending {counts['pending']} "
        f"({len(s.shards())} shards of {s.chunk_items})",
        f"generator   {gen.architecture or '(architecture not recorded)'}  sha256 {gen.sha256}  "
        f"source {gen.source or '-'}",
        f"            config {json.dumps(gen.config, sort_keys=True)}",
        f"inversion   {json.dumps(attrs.inversion, sort_keys=True)}",
        f"dataset     root {ds.root or '-'}  manifest {ds.manifest_hash[:16]}  appends {len(ds.history)}",
        f"layout      ws [{layout.num_ws}, {layout.w_dim}] ({attrs.chunking.ws_compressor})"
        + (f" + {', '.join(optional)}" if optional else ""),
        f"metrics     {', '.join(layout.metrics)}",
        f"labels      {', '.join(layout.labels) or '-'}",
        f"lease       {'held by ' + holder.describe() if holder else 'free'}",
        *stage_lines(s),
    ]))


@app.command("store-verify")
def store_verify(store: str = STORE,
                 repair: bool = typer.Option(False, "--repair",
                                             help="Mark bad items pending so the next run redoes them.")) -> None:
    """Checks that every item marked done has finite data; exit code 1 if not."""
    report = open_store(store, "r+" if repair else "r").verify(repair=repair)
    typer.echo(f"{report.num_items} items: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    for index, reason in list(zip(report.bad_items, report.reasons))[:20]:
        typer.echo(f"bad item {index}: {reason}")
    if len(report.bad_items) > 20:
        typer.echo(f"... and {len(report.bad_items) - 20} more bad items")
    if report.repaired:
        typer.echo(f"marked {len(report.bad_items)} items pending again")
    typer.echo("ok" if report.ok else "NOT OK")
    if not report.ok and not report.repaired:
        raise typer.Exit(1)


@app.command("store-rebuild-root")
def store_rebuild_root(store: str = STORE) -> None:
    """Writes a store's lost, unreadable or stale root metadata (zarr.json) again from the copy the store keeps of it;
    no array is touched."""
    from storage import LatentStore

    rebuilt = LatentStore.rebuild_root(store)
    counts = rebuilt.status_counts()
    typer.echo(f"rebuilt the root of {store}: {len(rebuilt)} items: done {counts['done']}, failed {counts['failed']}, "
               f"pending {counts['pending']}; check it with `ganinv store-verify {store}`")


@app.command("store-break-lease")
def store_break_lease(store: str = STORE) -> None:
    """Ends the run lease on a store whose run is dead (a live holder loses it at its next renewal)."""
    broken = open_store(store, "r+").break_lease()
    typer.echo(f"broke lease of {broken.describe()}" if broken else "no lease was held")
