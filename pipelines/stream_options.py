"""The streaming job's own options and its Pub/Sub resources: the subscriptions it reads,
the topics it publishes to, and the check that they exist before it starts
(:mod:`pipelines.stream` is the driver)."""

from __future__ import annotations

from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from connectors.pubsub import DEFAULT_PUBLISH_TIMEOUT_S
from core.policy import Policy
from pipelines import preflight
from pipelines.options import SafetyNetOptions, SharedOptions
from schemas.streams import (
    DRIFT,
    HEALTH,
    INPUTS,
    OUTPUTS,
    SHADOW_TOPICS,
    subscription_path,
    topic_path,
)


class StreamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for n in INPUTS:
            parser.add_argument(f"--{n}_subscription", default=None, metavar="SUBSCRIPTION",
                                help=f"subscription of {INPUTS[n]} messages "
                                     f"(default projects/PROJECT/subscriptions/safetynet-{n})")
        for n in OUTPUTS:
            parser.add_argument(f"--{n}_topic", default=None, metavar="TOPIC",
                                help=f"topic for {n} (default "
                                     f"projects/PROJECT/topics/safetynet-{n})")
        parser.add_argument("--payload", choices=("json", "avro"), default="json",
                            help="message encoding of inputs and outputs (default json; "
                                 "avro = schemaless Avro with schemas/*.avsc)")
        parser.add_argument("--profiles", dest="profiles_path", default=None, metavar="FILE",
                            help="UserProfile file (Avro/Parquet), loaded once at start")
        parser.add_argument("--model_versions_dir", default=None, metavar="DIR",
                            help="where the Learner publishes model versions and the "
                                 "scorers read them (a local path or gs://; default: a "
                                 "new local temporary directory, fine for the local runner "
                                 "only: on Dataflow or Flink give a shared location)")
        parser.add_argument("--warning_holdout_topic", default=None,
                            help="topic for the warnings the holdout withheld (default "
                                 "projects/PROJECT/topics/safetynet-warning_holdout)")
        parser.add_argument("--health_every", type=float, default=60.0, metavar="SECONDS",
                            help="print a health line and publish a health record every "
                                 "SECONDS of wall time (default 60; 0: never)")
        parser.add_argument("--health_topic", default=None, metavar="TOPIC",
                            help="topic for the health records (default "
                                 "projects/PROJECT/topics/safetynet-health)")
        parser.add_argument("--publish_timeout", type=float, default=DEFAULT_PUBLISH_TIMEOUT_S,
                            metavar="SECONDS",
                            help="a decision that cannot be published for this long stops "
                                 "the job with one line naming the topic, exit status 1 "
                                 "(default 300; other topics keep flowing meanwhile; "
                                 "local runner)")
        parser.add_argument("--create_missing", action="store_true", default=False,
                            help="create the input subscriptions and output topics that do "
                                 "not exist yet (default: a missing one stops the job before "
                                 "it starts, exit status 2, naming it)")


def output_topics(options: PipelineOptions, policy: Policy,
                  shadow: Optional[Policy] = None) -> dict:
    """{output name: topic path} of every topic the job publishes to: the outputs, the
    daily drift figures', the health records' (unless ``--health_every 0``), the warning
    holdout's when the policy has one, the shadow's when ``shadow`` is given."""
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    topics = {n: getattr(so, f"{n}_topic") or topic_path(project, n) for n in OUTPUTS}
    if policy.warning_holdout > 0:
        topics["warning_holdout"] = (so.warning_holdout_topic
                                     or topic_path(project, "warning_holdout"))
    topics[DRIFT] = topic_path(project, DRIFT)
    if so.health_every > 0:
        topics[HEALTH] = so.health_topic or topic_path(project, HEALTH)
    if shadow is not None:
        names = list(SHADOW_TOPICS)
        if shadow.warning_holdout > 0:
            names.append("shadow-warning_holdout")
        topics.update({n: topic_path(project, n) for n in names})
    return topics


def input_subscriptions(options: PipelineOptions) -> dict:
    """{input name: subscription path} of the job's four inputs."""
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    return {n: getattr(so, f"{n}_subscription") or subscription_path(project, n)
            for n in INPUTS}


def _shadow_of(options: PipelineOptions, policy: Policy) -> Optional[Policy]:
    path = options.view_as(SharedOptions).shadow_policy
    if not path:
        return None
    from pipelines.options import shadow_policy

    return shadow_policy(path, policy, options.view_as(SafetyNetOptions).time_scale or 1.0)


def check_resources(options: PipelineOptions, policy: Policy, shadow: Optional[Policy],
                    create: bool) -> list:
    """Before the job starts: every input subscription and output topic it will use
    exists. A missing one raises PreflightError naming it (one line), unless ``create``:
    then it is created. Returns the paths created."""
    from connectors.pubsub_client import create_missing, missing_resources

    topics = output_topics(options, policy, shadow)
    subs = input_subscriptions(options)
    try:
        missing = missing_resources(list(dict.fromkeys(topics.values())),
                                    list(subs.values()))
        if missing and create:
            return create_missing(missing)
    except Exception as e:  # noqa: BLE001 - permission, network: one line
        raise preflight.PreflightError(
            f"cannot check the job's Pub/Sub topics and subscriptions: "
            f"{preflight.first_line(e)}") from None
    if missing:
        shown = "; ".join(f"{kind} {path}" for kind, path in missing)
        raise preflight.PreflightError(
            f"missing {shown} (create it, or add --create_missing; `safetynet publish` "
            "creates the input and output topics and subscriptions)")
    return []


RESOURCES_HELP = """\
What must exist before the job starts (checked; a missing one stops it, exit 2):
  subscriptions  safetynet-{transfers,reports,outcomes,blacklist}
  topics         safetynet-{holds,resolutions,freezes,outreach,verdicts,dead_letter,cases},
                 safetynet-health (unless --health_every 0),
                 safetynet-warning_holdout (with --warning_holdout),
                 safetynet-shadow-* (with --shadow_policy)
Who creates them:
  safetynet publish         the four input topics and subscriptions, the seven output
                            topics and a subscription of each (not health/holdout/shadow)
  safetynet stream --create_missing   whatever the job itself needs and is missing
                            (output topics without subscriptions: add your own)
  ./run_local.sh            everything, on its own emulator"""
