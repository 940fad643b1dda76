"""Commands on a latent store: `store-info`, `store-verify`, `store-migrate`, `store-rebuild-root`,
`store-break-lease`."""

from __future__ import annotations

import json

import typer

from cli import common

app = typer.Typer()
STORE = typer.Argument(..., help="Store path or fsspec URL (s3://bucket/corpus.zarr).")


@app.command("store-info")
def store_info(store: str = STORE,
               as_json: bool = typer.Option(False, "--json", help="Print the root attributes and counts as JSON.")
               ) -> None:
    """Summary of a latent store: items done/failed/pending, generator identity, inversion config, lease."""
    s = common.existing_store(store)
    from runtime.describe import stage_lines  # (torch) once the store is there
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
                 repair: bool = typer.Option(False, "--repair", help="Requeue the items whose data is bad or in a "
                                             "corrupt chunk (the next run redoes them), rebuild corrupt status, "
                                             "error and attempts chunks.")) -> None:
    """Reads every chunk of a store, checking its checksum, and every item marked done; exit code 1 if anything is
    wrong (and not repaired)."""
    report = common.existing_store(store, "r+" if repair else "r").verify(repair=repair)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items()) if min(report.counts.values()) >= 0 else \
        "status unreadable"
    typer.echo(f"{report.num_items} items: {counts}; checksums {'verified' if report.checksums else 'absent'}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    for chunk in report.corrupt_chunks[:20]:
        typer.echo(f"corrupt: {chunk}")
    for index, reason in list(zip(report.bad_items, report.reasons))[:20]:
        typer.echo(f"bad item {index}: {reason}")
    if len(report.bad_items) > 20:
        typer.echo(f"... and {len(report.bad_items) - 20} more bad items")
    if report.repaired:
        typer.echo(f"repaired: marked {len(report.requeued)} items pending again (the next `ganinv invert` redoes "
                   "them); run store-verify again to check")
    typer.echo("ok" if report.ok else "NOT OK")
    if not report.ok and not report.repaired:
        raise typer.Exit(1)


@app.command("store-migrate")
def store_migrate(store: str = STORE,
                  new_store: str = typer.Argument(..., help="Where the copy goes (a new, empty location).")) -> None:
    """Copies a store into the current layout (every chunk checksummed, text every Zarr v3 reader understands,
    edit runs on their own item axis); the source is not changed. Swap the folders afterwards."""
    from storage import LatentStore

    copy = LatentStore.migrate(store, new_store)
    typer.echo(f"copied {len(copy)} items of {store} into {new_store} (schema v{copy.attributes.schema_version}); "
               f"check it with `ganinv store-verify {new_store}`, then swap: mv {store} {store}.old && "
               f"mv {new_store} {store}")


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
    broken = common.existing_store(store, "r+").break_lease()
    typer.echo(f"broke lease of {broken.describe()}" if broken else "no lease was held")
