"""Seed 003 §3.4 / Fig. 5: the comical CKA-map targets and the manipulation verdict on what each target targets."""

from __future__ import annotations

import pytest
import torch

import simbench
from simbench_plugins.benchmarks.manipulation import ALL_PROBES, Manipulation
from simbench_plugins.perturbations._manipulation_impl import offdiag_distance, target_map
from simbench_plugins.perturbations.manipulation import COMICAL, CkaMapManipulation


def test_comical_targets_are_the_declared_patterns() -> None:
    original = torch.full((6, 6), 0.7)
    board = target_map(CkaMapManipulation(map_target="checkerboard"), original)
    cross = target_map(CkaMapManipulation(map_target="cross"), original)
    assert set(COMICAL) == {"checkerboard", "cross"}
    assert board[0].tolist() == [1, 0, 1, 0, 1, 0] and board[1].tolist() == [0, 1, 0, 1, 0, 1]
    assert cross[0].tolist() == [1, 0, 0, 0, 0, 1] and cross[2].tolist() == [0, 0, 1, 1, 0, 0]
    for t in (board, cross):  # a CKA map: symmetric, ones on the diagonal, independent of the original
        assert torch.equal(t, t.T) and torch.equal(torch.diagonal(t), torch.ones(6))
        assert torch.equal(t, target_map(CkaMapManipulation(map_target="checkerboard" if t is board else "cross"),
                                         torch.zeros(6, 6)))
    # odd size: the cross's centre is on the diagonal
    assert target_map(CkaMapManipulation(map_target="cross"), torch.zeros(5, 5))[2].tolist() == [0, 0, 1, 0, 0]


def test_offdiag_distance_ignores_the_diagonal() -> None:
    m = torch.eye(4)
    t = torch.ones(4, 4)
    assert offdiag_distance(m, t) == pytest.approx(1.0)  # all-cells mean would be 0.75
    assert offdiag_distance(t, t) == 0.0


def _records(target: str, stats: dict[str, float], agreement: float = 0.98) -> list[simbench.Record]:
    out = [simbench.Record("", "agreement", agreement, probe_set="clean", group=target, model_a="o", model_b="m"),
           simbench.Record("", "accuracy_change", 0.0, probe_set="clean", group=target, model_a="o", model_b="m"),
           simbench.Record("", "agreement_reference", 0.9, probe_set="clean", group="reference")]
    out += [simbench.Record("", k, v, group=target, model_a="o", model_b="m") for k, v in stats.items()]
    for stat, value in (("displacement_mean", 0.3), ("closer_fraction_mean", 0.1), ("movement_scaled_mean", 0.1),
                        ("rank", 1.0)):
        out.append(simbench.Record("", stat, value, metric="linear_cka", probe_set=ALL_PROBES, group=target))
    return out


def _verdict(records: list[simbench.Record]) -> dict:
    tables = {t.key: t for t in Manipulation.tables(records)}
    return tables["verdict"].frame.iloc[0].to_dict()


def test_first_last_target_is_judged_on_the_first_last_cell() -> None:
    # the mean off-diagonal barely moves (0.857 -> 0.875) but the targeted cell does (0.40 -> 0.95)
    stats = {"map_offdiag_original": 0.857, "map_offdiag": 0.875, "map_first_last_original": 0.40,
             "map_first_last": 0.95}
    row = _verdict(_records("first_last_max", stats))
    assert row["targeted_statistic"] == "first<->last CKA" and row["targeted"] == "0.400 -> 0.950"
    assert row["reproduced"] == "yes" and row["map_offdiag"] == "0.857 -> 0.875"
    stats.update(map_first_last=0.42)
    assert _verdict(_records("first_last_max", stats))["reproduced"] == "no"


def test_all_min_must_move_down_and_function_must_hold() -> None:
    down = {"map_offdiag_original": 0.857, "map_offdiag": 0.05}
    assert _verdict(_records("all_min", down))["reproduced"] == "yes"
    up = {"map_offdiag_original": 0.5, "map_offdiag": 0.9}  # moved, but away from the identity
    assert _verdict(_records("all_min", up))["reproduced"] == "no"
    assert _verdict(_records("all_min", down, agreement=0.8))["reproduced"] == "no"


@pytest.mark.parametrize("target", ["checkerboard", "cross"])
def test_comical_targets_must_end_close_to_their_map(target: str) -> None:
    close = {"map_offdiag_original": 0.86, "map_offdiag": 0.4, "map_target_distance_original": 0.6,
             "map_target_distance": 0.05}
    row = _verdict(_records(target, close))
    assert row["reproduced"] == "yes" and row["targeted"] == "0.600 -> 0.050"
    far = dict(close, map_target_distance=0.3)  # halved the distance but does not "closely resemble" the target
    row = _verdict(_records(target, far))
    assert row["reproduced"] == "no" and "further than 0.15" in row["why"]
