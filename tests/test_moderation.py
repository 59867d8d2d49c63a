"""Moderation policies: parsing and validation, scores, actions, audit log, calibration, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import make_photo, make_photos
from glimpse.encoders.base import l2_normalize
from glimpse.errors import UserInputError
from glimpse.moderation import Category, Moderator, Policy, append_audit, calibrate, with_thresholds

POLICY = """
[[category]]
name = "weapons"
positive = ["a gun", "a rifle"]
negative = ["a toy gun"]
threshold = 0.6
action = "reject"

[[category]]
name = "gore"
positive = "blood"
threshold = 0.5
"""


def test_policy_parses_with_defaults(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    policy = Policy.load(path)
    weapons, gore = policy.categories
    assert weapons == Category("weapons", ("a gun", "a rifle"), ("a toy gun",), 0.6, "reject")
    assert gore.positive == ("blood",) and gore.negative == ("a photo",) and gore.action == "flag"
    assert len(policy.digest) == 64
    # to_toml round-trips.
    again = Policy.from_dict(__import__("tomllib").loads(policy.to_toml()))
    assert again.categories == policy.categories


@pytest.mark.parametrize(("text", "message"), [
    ("x = 1", "no categories"),
    ('[[category]]\nname = "a"\npositive = ["x"]\nthreshold = 2', "threshold must be a number in"),
    ('[[category]]\nname = "a"\npositive = ["x"]\naction = "delete"', "action must be 'flag' or 'reject'"),
    ('[[category]]\nname = "a"\npositive = []', "positive must be a non-empty list"),
    ('[[category]]\nname = "a"\npositive = ["x"]\ncolour = 1', "unknown keys"),
    ('[[category]]\nname = "a"\npositive = ["x"]\n[[category]]\nname = "a"\npositive = ["y"]', "distinct"),
    ("[[category]\n", "not valid TOML"),
])
def test_bad_policies_are_user_errors(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message):
        Policy.load(path)


def _moderator(threshold=0.5):
    """A moderator over hand-made 2-d prompt vectors: positive along x, negative along y."""
    policy = Policy((Category("c", ("p",), ("n",), threshold, "reject"),
                     Category("d", ("q",), ("n",), 0.9, "flag")))
    return Moderator(policy, "key", 10.0, [np.array([[1.0, 0.0]], np.float32), np.array([[0.6, 0.8]], np.float32)],
                     [np.array([[0.0, 1.0]], np.float32)] * 2)


def test_scores_are_the_two_way_softmax_of_best_positive_and_negative():
    moderator = _moderator()
    vector = l2_normalize(np.array([[0.8, 0.6]], np.float32))
    scores = moderator.scores(vector)
    # category c: cos(p) 0.8, cos(n) 0.6 -> sigmoid(10 * 0.2); d: cos(q) 0.48 + 0.48 = 0.96 vs 0.6
    assert scores[0, 0] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)
    assert scores[0, 1] == pytest.approx(1 / (1 + math.exp(-3.6)), rel=1e-5)
    results = moderator.decide(["a.jpg"], vector)
    # c (0.88 >= 0.5, reject) and d (0.973 >= 0.9, flag) both trigger: reject wins.
    assert results[0]["action"] == "reject" and results[0]["triggered"] == ["c", "d"]
    low = moderator.decide(["b.jpg"], np.array([[0.0, 1.0]], np.float32))
    assert low[0]["action"] == "allow" and low[0]["triggered"] == []


def test_audit_log_is_append_only_jsonl(tmp_path):
    moderator = _moderator()
    log = tmp_path / "audit" / "log.jsonl"
    results = moderator.decide(["a.jpg", "b.jpg"], np.array([[1, 0], [0, 1]], np.float32))
    append_audit(log, results, moderator.policy, "key")
    append_audit(log, results[:1], moderator.policy, "key")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["path"] for line in lines] == ["a.jpg", "b.jpg", "a.jpg"]
    assert all(line["model_key"] == "key" and "time" in line and "scores" in line for line in lines)


def test_calibrate_picks_lowest_threshold_reaching_the_precision():
    moderator = _moderator()
    # x-components give category c scores in decreasing order for these rows.
    xs = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    vectors = l2_normalize(np.stack([xs, np.sqrt(1 - xs**2)], axis=1).astype(np.float32))
    truth = np.zeros((6, 2), dtype=bool)
    truth[[0, 1, 3], 0] = True  # ranking: T T F T F F
    scores = moderator.scores(vectors)[:, 0]
    out = calibrate(moderator, vectors, truth, target_precision=0.75)
    # precision at ranks: 1, 1, 2/3, 3/4 -> the lowest threshold with >= 0.75 is the 4th score.
    assert out[0]["reached"] and out[0]["threshold"] == pytest.approx(float(scores[3]))
    assert out[0]["precision"] == pytest.approx(0.75) and out[0]["recall"] == pytest.approx(1.0)
    assert out[1]["reached"] is False  # category d has no positives
    updated = with_thresholds(moderator.policy, out)
    assert updated.categories[0].threshold == pytest.approx(float(scores[3]), abs=1e-6)
    assert updated.categories[1].threshold == 0.9
    with pytest.raises(UserInputError):
        calibrate(moderator, vectors, truth, target_precision=0)


def test_moderate_cli_with_a_real_model(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app

    make_photos(tmp_path / "photos", 3)
    (tmp_path / "p.toml").write_text(POLICY.replace("threshold = 0.6", "threshold = 0.0"))
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "moderate", str(tmp_path / "photos"), "--policy", str(tmp_path / "p.toml"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    # threshold 0 always triggers "weapons" (reject): every image is rejected with its scores reported.
    assert [r["action"] for r in rows] == ["reject"] * 3
    assert all(set(r["scores"]) == {"weapons", "gore"} and "weapons" in r["triggered"] for r in rows)
    audit = (tmp_path / "lib" / "moderation-audit.jsonl").read_text().splitlines()
    assert len(audit) == 3
    # Calibration on labelled folders writes a policy with the picked thresholds.
    for i in range(2):
        make_photo(tmp_path / "cal" / "weapons" / f"{i}.png", seed=200 + i)
        make_photo(tmp_path / "cal" / "safe" / f"{i}.png", seed=300 + i)
    result = runner.invoke(app, [*base, "moderate", "--policy", str(tmp_path / "p.toml"), "--calibrate",
                                 str(tmp_path / "cal"), "--target-precision", "0.5", "--write-policy",
                                 str(tmp_path / "new.toml"), "--json"])
    assert result.exit_code == 0, result.output
    calibrated = json.loads(result.stdout)["categories"]
    assert calibrated[0]["category"] == "weapons" and calibrated[0]["reached"] is True
    assert Policy.load(tmp_path / "new.toml").categories[0].threshold == pytest.approx(calibrated[0]["threshold"],
                                                                                       abs=1e-6)
    result = runner.invoke(app, [*base, "moderate", str(tmp_path / "photos"), "--policy", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "cannot read policy file" in result.stderr


def test_the_shipped_example_policy_runs_through_the_command(tmp_path, tiny_clip):
    from pathlib import Path

    from typer.testing import CliRunner

    from glimpse.cli import app

    example = Path(__file__).resolve().parents[1] / "examples" / "moderation-policy.toml"
    policy = Policy.load(example)
    assert [c.name for c in policy.categories] == ["weapons", "blood", "documents"]
    assert {c.action for c in policy.categories} == {"flag", "reject"} and policy.templates == "photo"
    make_photos(tmp_path / "photos", 2)
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    result = CliRunner().invoke(app, [*base, "moderate", str(tmp_path / "photos"), "--policy", str(example),
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(set(r["scores"]) == {"weapons", "blood", "documents"} for r in rows)
    assert all(r["action"] in ("allow", "flag", "reject") for r in rows)
    audit = [json.loads(line) for line in (tmp_path / "lib" / "moderation-audit.jsonl").read_text().splitlines()]
    assert [a["policy_sha256"] for a in audit] == [policy.digest] * 2
