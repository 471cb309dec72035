"""Synthetic registries: valid cases, deterministic, the documented mixes, fast."""

from __future__ import annotations

import time
from collections import Counter

from netboard.batch.io import check_row
from netboard.batch.synth import SITE_MIX, synth_table


def test_every_sampled_row_is_a_valid_case() -> None:
    table = synth_table(3000, seed=4, given=True)
    for record in table.to_pylist():
        case, problems = check_row(record)
        assert case is not None, (record["id"], [str(p) for p in problems])


def test_deterministic_for_a_seed() -> None:
    assert synth_table(500, seed=9).equals(synth_table(500, seed=9))
    assert not synth_table(500, seed=9).equals(synth_table(500, seed=10))


def test_site_mix_follows_the_table() -> None:
    n = 50_000
    sites = Counter(synth_table(n, seed=1).column("primary_site").to_pylist())
    total = sum(SITE_MIX.values())
    for site, share in SITE_MIX.items():
        assert abs(sites[site] / n - share / total) < 0.01, site
    assert set(sites) == set(SITE_MIX)


def test_given_is_mostly_present_and_single() -> None:
    given = synth_table(2000, seed=3, given=True).column("given").to_pylist()
    known = [g for g in given if g is not None]
    assert 0.9 < len(known) / len(given) < 0.99
    assert all(len(g) == 1 for g in known)


def test_fast() -> None:
    start = time.perf_counter()
    synth_table(200_000, seed=0, given=True)
    assert time.perf_counter() - start < 10
