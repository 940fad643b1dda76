"""What can be wrong with a store, as `UserError`s (the CLI ends with exit code 2 and the message)."""

from __future__ import annotations

from ganinv.errors import UserError


class StoreNotFoundError(UserError, FileNotFoundError):
    """No latent store at the URL."""


class StoreExistsError(UserError, FileExistsError):
    """create() found a store already at the URL."""


class StoreMismatchError(UserError, ValueError):
    """The store was made with another generator, inversion config, layout or schema version."""


class StoreDamagedError(StoreMismatchError):
    """The folder holds a store's arrays but its root metadata is missing, unreadable or stale: it is never adopted
    (written over) or shrunk; the message says how to rebuild the root or to move the folder aside."""


class RootMissingError(StoreDamagedError):
    """The folder holds a store's arrays but no root `zarr.json`. Seen without the lease, it may also be a store that
    another run is creating at this moment: `open_or_create` then decides under the lease (creation.create)."""


class StoreCorruptError(StoreDamagedError):
    """A chunk failed its checksum (or could not be decoded). `array` and `chunks` name it; the message says how to
    repair: `ganinv store-verify URL --repair` requeues the items whose data it held, or rebuilds `status`."""

    def __init__(self, message: str, *, array: str = "", chunks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.array, self.chunks = array, chunks


class ArrayMissingError(StoreDamagedError, KeyError):
    """An array the store's layout names is not there."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


class NotInStoreError(UserError, KeyError):
    """A label, metric, image id, direction or edit run the store does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


def root_missing_message(url: str, what: str) -> str:
    return (f"{url} holds a latent store's folders but its root metadata ({url.rstrip('/')}/zarr.json) {what}; "
            "nothing was changed. Rebuild the root from the copy the store keeps: "
            f"`ganinv store-rebuild-root {url}`; or move the folder aside (e.g. mv {url} {url}.damaged) and invert "
            "into a new store. Do not delete it: its arrays hold the latent codes.")


def not_empty_message(url: str) -> str:
    return (f"{url} is not empty but holds no latent store root (zarr.json): a new store is created only in a new or "
            f"empty folder. If it is a store whose root was lost, rebuild it: `ganinv store-rebuild-root {url}`; "
            "otherwise choose another --store.")


def corrupt_message(url: str, array: str, chunks: tuple[int, ...], chunk_items: int, error: str) -> str:
    where = ", ".join(f"{k} (items {k * chunk_items}-{(k + 1) * chunk_items - 1})" for k in chunks[:5])
    more = f" and {len(chunks) - 5} more" if len(chunks) > 5 else ""
    return (f"{url}: chunk {where}{more} of `{array}` is corrupt ({error}). Nothing was changed. "
            f"`ganinv store-verify {url} --repair` requeues the items whose data it held (a `status` chunk is rebuilt "
            "from the data arrays' checksums); then run the inversion again.")


def damaged_advice(url: str) -> str:
    return (f"restore that file from a backup, or move the store aside (mv {url} {url}.damaged) and invert into a new "
            "one; its other arrays stay readable with zarr")
