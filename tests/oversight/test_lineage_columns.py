"""A radius handed over as columns (what the database walks read) answers as the
pure walk does: counts before anything is built, and the same hits and paths after."""

import random

import pytest

from headwater.oversight import blast_radius, parse_ref
from headwater.oversight.lineage import BlastRadius, Reached
from tests.oversight.graphs import IDS, SHA, memory_graph, random_graph, to_memory


def outputs_of(graph, ck):
    arts = [f"artifact:{sha}" for c, direction, sha in graph.links if c == ck and direction == "out"]
    claims = [f"claim:{name}@{version}" for c, kind, name, version, d in graph.uses
              if c == ck and kind == "claim" and d == "produced"]
    return arts + claims


def as_columns(graph, expected, seed):
    """The pure walk's radius as a database walk reads it: one row per checkpoint, in any order."""
    ids = list(expected.links)
    random.Random(seed).shuffle(ids)
    info = [expected.info[c] for c in ids]
    return Reached(ids, [i.run_id for i in info], [i.workflow for i in info], [i.task for i in info],
                   [i.status for i in info], [i.seq for i in info], [expected.depths[c] for c in ids],
                   [expected.links[c][0] for c in ids], [expected.links[c][1] for c in ids],
                   [outputs_of(graph, c) for c in ids])


def check_same(graph, selector, seed=0):
    expected = blast_radius(graph, parse_ref(selector))
    radius = BlastRadius(expected.selector, list(expected.seeds))
    radius.fill(as_columns(graph, expected, seed))
    assert radius.counts() == expected.counts(), selector  # from the columns, nothing built yet
    assert radius.to_json() == expected.to_json(), selector
    assert radius.producers == expected.producers and radius.depths == expected.depths
    assert radius.counts() == expected.counts()  # and from the dictionaries
    return radius


@pytest.mark.parametrize("selector", ["lib:numpy", "lib:numpy@2.0", "claim:g", "claim:x", "lib:absent"])
def test_columns_answer_as_the_pure_walk(selector):
    check_same(memory_graph(), selector)


def test_an_output_two_checkpoints_produced_is_reached_through_the_first_by_depth_then_id():
    # c1 and c6 (two runs) both write the bytes s1, and both used numpy 2.0
    for seed in range(5):
        radius = check_same(memory_graph(), "lib:numpy@2.0", seed)
        assert radius.producers[f"artifact:{SHA['s1']}"] == min(IDS["c1"], IDS["c6"])


@pytest.mark.parametrize("seed", range(8))
def test_columns_answer_as_the_pure_walk_on_random_graphs(seed):
    rows = random_graph(seed, "n-", runs=4, per_run=6)
    graph = to_memory(rows)
    for sel in [f"lib:n-L{i}" for i in range(3)] + ["lib:n-L2@>=v1"] + [f"claim:n-k{i}" for i in range(3)]:
        check_same(graph, sel, seed)
