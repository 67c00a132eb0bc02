"""Seeds and argument checks shared by the synthetic labelling processes."""

from __future__ import annotations

import numpy as np

Seed = int | np.random.Generator


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy Generator, not {seed!r}")
    return np.random.default_rng(int(seed))


def _children(seed: Seed, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from one seed (each process gets its own stream)."""
    if isinstance(seed, np.random.Generator):
        return [np.random.default_rng(int(s)) for s in seed.integers(0, 2**63, size=n)]
    _rng(seed)  # validates
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_positive_int(value: object, name: str) -> None:
    _check(
        isinstance(value, (int, np.integer)) and value >= 1,
        f"{name} must be a positive integer, not {value!r}",
    )


def _as_flags(values: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    _check(len(arr) == n, f"{name} has {len(arr)} entries for {n} cells")
    return arr.astype(bool)


def _natural(name: str) -> tuple[str, int]:
    """Sort key putting ``rater2`` before ``rater10``."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return (stem, int(digits) if digits else -1)
