"""What the streaming job checks and says without Pub/Sub: the topics it will check before
it starts (the shadow's and the holdout's only when asked for), and its own warnings, shown
by default and with ``--quiet`` (which hides Beam's log, not ours)."""

from __future__ import annotations

import logging

import pytest

from pipelines.options import policy_from_options
from pipelines.preflight import apply_verbosity
from pipelines.stream import _shadow_of, build_options, input_subscriptions, output_topics


def _topics(argv: list) -> set:
    options = build_options(["--project", "my-project", *argv])
    policy = policy_from_options(options)
    return {t.rsplit("/", 1)[-1] for t in
            output_topics(options, policy, _shadow_of(options, policy)).values()}


def test_the_job_checks_every_topic_it_will_publish_to(tmp_path):
    base = {f"safetynet-{n}" for n in ("holds", "resolutions", "freezes", "outreach",
                                       "verdicts", "dead_letter", "cases", "health", "drift")}
    assert _topics([]) == base
    assert _topics(["--health_every", "0"]) == base - {"safetynet-health"}
    assert _topics(["--warning_holdout", "5%"]) == base | {"safetynet-warning_holdout"}
    shadow = tmp_path / "candidate.yaml"
    shadow.write_text("hold_threshold: 0.6\n")
    assert _topics(["--shadow_policy", str(shadow)]) == base | {
        f"safetynet-shadow-{n}" for n in ("holds", "resolutions", "freezes", "outreach",
                                          "verdicts", "disagreements")}
    assert _topics(["--holds_topic", "projects/other/topics/held"]) == (
        base - {"safetynet-holds"}) | {"held"}
    subs = input_subscriptions(build_options(["--project", "my-project"]))
    assert sorted(subs.values()) == sorted(
        f"projects/my-project/subscriptions/safetynet-{n}"
        for n in ("transfers", "reports", "outcomes", "blacklist"))


@pytest.fixture
def fresh_logging():
    own = logging.getLogger("safetynet")
    saved = list(own.handlers)
    own.handlers = []
    yield
    own.handlers = saved


@pytest.mark.parametrize("quiet", [False, True])
def test_our_warnings_are_shown_and_beams_are_not(capsys, fresh_logging, quiet):
    apply_verbosity(quiet=quiet, verbose=False)
    logging.getLogger("safetynet.pubsub").warning("publish to T failed")
    logging.getLogger("apache_beam.runners").warning("beam chatter")
    err = capsys.readouterr().err
    assert "[safetynet] WARNING publish to T failed" in err
    assert "beam chatter" not in err
