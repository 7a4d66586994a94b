"""The names data set: fetching it, reading it, and turning it into training examples.

Every example is a context of ``block_size`` character indices (X) and the index of the
character that follows (Y). ``.`` (index 0) pads the start of a name and marks its end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .course import NAMES_SHA256, NAMES_URL, REPO_ROOT
from .resources import DataError, default_names_path, sha256_of, splits_cache_dir
from .resources import fetch_names as _fetch_names

__all__ = ["NAMES_SHA256", "NAMES_URL", "DataError", "sha256_of"]

# The wheel's names.txt when installed, else the checkout's data/names.txt.
DEFAULT_NAMES_PATH = default_names_path()
# Where the course's machines keep a copy, so that no download is needed.
SHARED_NAMES_PATH = REPO_ROOT.parent / "shared" / "data" / "names.txt"


def fetch_names(
    dest: Path = DEFAULT_NAMES_PATH,
    *,
    local_copy: Path | None = SHARED_NAMES_PATH,
    url: str = NAMES_URL,
    sha256: str = NAMES_SHA256,
) -> Path:
    """Put names.txt at ``dest``: copied from ``local_copy`` if it exists, else downloaded.

    Either way the file's sha256 must match, or nothing is left at ``dest`` and a
    ``DataError`` says what to do. An already verified ``dest`` is kept as it is.
    """
    return _fetch_names(dest, local_copy=local_copy, url=url, sha256=sha256)


def read_names(path: Path = DEFAULT_NAMES_PATH) -> list[str]:
    """The names in ``path``, one per line, in file order."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path} does not exist: run `make data` in the course's folder, then run this cell again"
        )
    return path.read_text(encoding="utf-8").splitlines()


@dataclass(frozen=True)
class Vocabulary:
    """Characters ↔ indices; ``.`` is 0, the other characters follow in sorted order."""

    itos: tuple[str, ...]

    @classmethod
    def from_words(cls, words: list[str]) -> Vocabulary:
        return cls((".", *tuple(sorted(set("".join(words))))))

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        return [stoi[ch] for ch in text]

    def decode(self, indices) -> str:
        return "".join(self.itos[int(i)] for i in indices)


def build_dataset(words: list[str], vocab: Vocabulary, block_size: int = 3):
    """Contexts X (examples × block_size, int64) and next characters Y (examples,)."""
    stoi = vocab.stoi
    contexts, targets = [], []
    for word in words:
        context = [0] * block_size
        for ch in word + ".":
            index = stoi[ch]
            contexts.append(context)
            targets.append(index)
            context = [*context[1:], index]
    X = torch.tensor(contexts, dtype=torch.long).view(-1, block_size)
    Y = torch.tensor(targets, dtype=torch.long)
    return X, Y


@dataclass(frozen=True)
class Splits:
    """The lecture's 80/10/10 split of the names into train, val and test examples."""

    vocab: Vocabulary
    Xtr: torch.Tensor
    Ytr: torch.Tensor
    Xdev: torch.Tensor
    Ydev: torch.Tensor
    Xte: torch.Tensor
    Yte: torch.Tensor


def split_dataset(words: list[str], block_size: int = 3, seed: int = 42) -> Splits:
    """Shuffle the words as ``random.seed(seed); random.shuffle(words)`` would, then split 80/10/10."""
    vocab = Vocabulary.from_words(words)
    shuffled = list(words)
    random.Random(seed).shuffle(shuffled)
    n1, n2 = int(0.8 * len(shuffled)), int(0.9 * len(shuffled))
    return Splits(
        vocab,
        *build_dataset(shuffled[:n1], vocab, block_size),
        *build_dataset(shuffled[n1:n2], vocab, block_size),
        *build_dataset(shuffled[n2:], vocab, block_size),
    )


def load_splits(path: Path = DEFAULT_NAMES_PATH, block_size: int = 3) -> Splits:
    """The lecture's train/val/test splits of names.txt.

    Building them from text takes ~0.5 s, paid by every notebook kernel (and every graded
    notebook), so the tensors are cached beside the file, keyed by its sha256.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path} does not exist: run `make data` in the course's folder, then run this cell again"
        )
    cache = splits_cache_dir(path) / f"{path.stem}-{sha256_of(path)[:16]}-block{block_size}.pt"
    try:
        saved = torch.load(cache, weights_only=True)
        return Splits(Vocabulary(tuple(saved.pop("itos"))), **saved)
    except Exception:  # no cache yet, or an unreadable one: rebuild it
        pass
    splits = split_dataset(read_names(path), block_size)
    _save_quietly(
        cache,
        {
            "itos": list(splits.vocab.itos),
            **{f.name: getattr(splits, f.name) for f in fields(splits) if f.name != "vocab"},
        },
    )
    return splits


def _save_quietly(path: Path, obj) -> None:
    """torch.save via a temporary file (atomic for concurrent readers); a read-only place is fine."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        torch.save(obj, partial)
        os.replace(partial, path)
    except OSError:
        pass


def minibatch(X: torch.Tensor, Y: torch.Tensor, batch_size: int, generator: torch.Generator):
    """``batch_size`` examples drawn uniformly with replacement, as in the lecture."""
    ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
    return X[ix], Y[ix]


def main(argv: list[str] | None = None) -> int:
    """``python -m backprop_ninja.data``: the course's data step (``make data``)."""
    parser = argparse.ArgumentParser(description="Put a verified names.txt in place.")
    parser.add_argument("--dest", type=Path, default=DEFAULT_NAMES_PATH)
    parser.add_argument(
        "--local-copy",
        type=Path,
        default=SHARED_NAMES_PATH,
        help="copy this file instead of downloading, when it exists",
    )
    parser.add_argument("--url", default=NAMES_URL)
    args = parser.parse_args(argv)
    try:
        path = fetch_names(args.dest, local_copy=args.local_copy, url=args.url)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path}: {len(read_names(path)):,} names, sha256 verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
