"""The dp-join scenario's data: rotten_tomatoes' train split cut into three providers' datasets.

Private fine-tuning across providers needs data that no single party holds whole, keyed by the
person each row is about (the privacy unit). This builds such data from the vendored train
split (8,530 rows), deterministically (seed ``SEED``), so every run and every test sees the
same files:

- every train row is one person: row ``i`` gets the synthetic id ``p-{i+1:06d}``
  (``p-000001`` ... ``p-008530``), so ``max_rows_per_key`` is 1;
- the persons are shuffled with ``random.Random(SEED)`` and cut into four groups:
  ``both`` 80 % (6,824), ``texts_only`` 9 % (768), ``labels_only`` 9 % (768) and ``neither``
  the rest (170);
- provider **texts** holds ``(person_id, text)`` of ``both`` + ``texts_only`` (89 %);
- provider **labels** holds ``(person_id, label)`` of ``both`` + ``labels_only`` (89 %): a
  vertical split with the texts provider, whose inner join is the ``both`` group (80 %);
- provider **extra** holds ``(person_id, text, label)`` of ``labels_only`` + ``neither``
  (938 persons, none of them in the inner join): rows the join adds by ``union``, so the
  joined training set is 7,762 rows (91 %) with one row per person.

Each file is ``<folder>/<provider>.parquet``, sorted by person id. The consumer's 1,066-row
test split is untouched. Run ``python -m core.ml.dp_split --provider texts --output-dir DIR``
to write one provider's file (what the scenario narrates each provider doing).
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidInputError
from core.ml.datasets import VENDORED_DIR, verify_checksums

if TYPE_CHECKING:
    import pyarrow as pa

SEED = 14
KEY = "person_id"
PROVIDERS = ("texts", "labels", "extra")
# group -> share of persons; "neither" takes what the others leave
SHARES = {"both": 0.80, "texts_only": 0.09, "labels_only": 0.09}
HOLDINGS = {
    "texts": (("both", "texts_only"), (KEY, "text")),
    "labels": (("both", "labels_only"), (KEY, "label")),
    "extra": (("labels_only", "neither"), (KEY, "text", "label")),
}


def person_id(row: int) -> str:
    """The synthetic person id of train row ``row`` (0-based)."""
    return f"p-{row + 1:06d}"


@dataclass(frozen=True)
class PersonGroups:
    """Which train rows (by index) fall in each group of the split."""

    both: frozenset[int]
    texts_only: frozenset[int]
    labels_only: frozenset[int]
    neither: frozenset[int]

    def of(self, name: str) -> frozenset[int]:
        return frozenset(getattr(self, name))

    def held_by(self, provider: str) -> frozenset[int]:
        groups, _ = HOLDINGS[_known(provider)]
        return frozenset().union(*(self.of(group) for group in groups))


def person_groups(rows: int, *, seed: int = SEED) -> PersonGroups:
    """Shuffle ``rows`` persons with ``seed`` and cut them by ``SHARES``."""
    order = list(range(rows))
    random.Random(seed).shuffle(order)
    cuts: dict[str, frozenset[int]] = {}
    start = 0
    for name, share in SHARES.items():
        size = round(share * rows)
        cuts[name] = frozenset(order[start : start + size])
        start += size
    return PersonGroups(neither=frozenset(order[start:]), **cuts)


def _known(provider: str) -> str:
    if provider not in HOLDINGS:
        raise InvalidInputError(
            f"provider '{provider}' is not part of the dp-join split", hint=f"use one of {PROVIDERS}"
        )
    return provider


def train_table() -> pa.Table:
    """The vendored train split (checksums verified), without its Hugging Face metadata."""
    import pyarrow.parquet as pq

    folder = VENDORED_DIR / "rotten_tomatoes"
    verify_checksums(folder)
    return pq.read_table(folder / "train.parquet", columns=["text", "label"]).replace_schema_metadata(None)


def provider_table(provider: str, train: pa.Table | None = None, *, seed: int = SEED) -> pa.Table:
    """One provider's rows: its groups' persons, its columns, sorted by person id."""
    import pyarrow as pa

    train = train if train is not None else train_table()
    _, columns = HOLDINGS[_known(provider)]
    rows = sorted(person_groups(train.num_rows, seed=seed).held_by(provider))
    picked = train.take(pa.array(rows, type=pa.int64()))
    table = picked.append_column(KEY, pa.array([person_id(row) for row in rows], type=pa.string()))
    return table.select(list(columns))


def write_provider(provider: str, folder: Path, *, seed: int = SEED) -> Path:
    """Write ``folder/<provider>.parquet`` whole or not at all (a temporary file renamed)."""
    import pyarrow.parquet as pq

    table = provider_table(provider, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{provider}.parquet"
    partial = folder / f".{provider}.parquet.partial"
    pq.write_table(table, partial)
    os.replace(partial, target)
    return target


def parser() -> argparse.ArgumentParser:
    """The command line `python -m core.ml.dp_split` reads (the scenario narrates it)."""
    parser = argparse.ArgumentParser(
        prog="python -m core.ml.dp_split", description="Write one dp-join provider's parquet file."
    )
    parser.add_argument("--provider", required=True, choices=PROVIDERS)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = write_provider(args.provider, args.output_dir, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
