"""The ``driftwatch`` command line.

    driftwatch simulate --scenario NAME --events N --seed S --out events.jsonl [--truth truth.json]
                       [--to kafka://HOST:PORT/TOPIC [--config monitor.yaml]]
    driftwatch replay events.jsonl [--config monitor.yaml] [--reference ref.json] [--alerts a.jsonl]
                     [--serve] [--metrics-listen HOST:PORT] [--otlp-endpoint URL]
    driftwatch run [--config monitor.yaml] [--metrics-listen HOST:PORT] [--otlp-endpoint URL] ...
    driftwatch evaluate --alerts alerts.jsonl --truth truth.json
    driftwatch reference build events.jsonl --out ref.json [--config monitor.yaml]
    driftwatch check-config monitor.yaml

Exit status: 0 on success, 2 on a usage or configuration error (the message names the file and
the field), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from alerting.sinks import AlertSink, FanoutSink, JsonlSink
from monitor import __version__
from monitor.config import ConfigError, Settings, load_settings


def _simulate(args: argparse.Namespace) -> int:
    from monitor.scenarios.simulate import generate

    if not args.out and not args.to:
        raise ConfigError("simulate: give --out FILE and/or --to kafka://HOST:PORT/TOPIC")
    try:
        sim = generate(
            args.scenario,
            args.events,
            args.seed,
            args.rate,
            onset=args.onset,
            start=_start(args.start, bool(args.to), args.events, args.rate),
        )
    except ValueError as exc:
        raise ConfigError(f"simulate: {exc}") from exc
    if args.out:
        truth = sim.write(args.out, args.truth)
        print(
            f"wrote {truth['lines']:,} lines ({truth['events']:,} predictions) of scenario "
            f"{args.scenario} to {args.out}" + (f"; truth in {args.truth}" if args.truth else ""),
            file=sys.stderr,
        )
    elif args.truth:
        import orjson

        with open(args.truth, "wb") as fh:
            fh.write(orjson.dumps(sim.truth(), option=orjson.OPT_INDENT_2) + b"\n")
    if args.to:
        from monitor.kafka_probe import check_access
        from monitor.kafka_security import event_logger_options
        from monitor.scenarios.publish import PublishError, parse_kafka_url, publish

        settings = load_settings(args.config)
        topics = settings.topics
        try:
            # The brokers come from the URL, the security settings from the kafka section.
            kafka = settings.kafka.model_copy(
                update={"bootstrap_servers": parse_kafka_url(args.to)[0]}
            )
            check_access(kafka)
            sent = publish(
                sim,
                args.to,
                args.batch,
                labels_topic=topics.labels,
                features_topic=topics.features,
                **event_logger_options(kafka),
            )
        except ValueError as exc:
            raise ConfigError(f"simulate --to: {exc}") from exc
        except PublishError as exc:
            print(f"driftwatch: {exc}", file=sys.stderr)
            return 1
        print(f"published {sent:,} events to {args.to} (batch {args.batch})", file=sys.stderr)
    return 0


def _start(value: str | None, live: bool, events: int, rate: float) -> datetime | None:
    """``simulate --start``: an RFC 3339 time, or ``now`` (the last event stamped about now).
    Published streams (``--to``) default to ``now``: the worker rejects events older than
    ``events.max_age`` as clock skew, so a stream stamped in the past would be refused whole."""
    if value is None:
        value = "now" if live else None
    if value is None:
        return None
    if value == "now":
        return datetime.now(UTC) - timedelta(seconds=events / rate if rate > 0 else 0.0)
    try:
        start = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"start must be RFC 3339 or 'now', got {value!r}") from exc
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def _observability_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """Apply ``--metrics-listen`` and ``--otlp-endpoint`` (which turns tracing on)."""
    update: dict[str, Any] = {}
    if getattr(args, "metrics_listen", None):
        update["metrics"] = settings.metrics.model_copy(
            update={"listen": args.metrics_listen, "enabled": True}
        )
    if getattr(args, "otlp_endpoint", None):
        update["tracing"] = settings.tracing.model_copy(
            update={"endpoint": args.otlp_endpoint, "enabled": True}
        )
    return settings.model_copy(update=update) if update else settings


def _serve_until_stopped(url: str | None) -> None:
    import signal
    import time

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"serving metrics and the status page on {url}/ (Ctrl-C to stop)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def _notifier(settings: Settings, stack: contextlib.ExitStack) -> AlertSink | None:
    """Routes state changes to the configured receivers (None without receivers); closed,
    i.e. flushed for up to 10 s, when ``stack`` closes."""
    if not settings.notifications.receivers:
        return None
    from alerting.notify import Notifier
    from alerting.settings import SecretError

    try:
        notifier = Notifier.from_settings(settings.notifications, settings.rule_set())
    except (SecretError, OSError) as exc:
        raise ConfigError(f"notifications: {exc}") from exc
    stack.callback(notifier.close)
    return notifier


def _replay(args: argparse.Namespace) -> int:
    from monitor.http_server import Observability
    from monitor.pipeline import Pipeline
    from monitor.references import load_references
    from monitor.replay import format_summary, replay

    settings = _observability_settings(load_settings(args.config), args)
    ref_path = args.reference or settings.reference.path
    references = load_references(ref_path) if ref_path else {}
    observed = args.serve or settings.tracing.enabled
    obs = Observability(settings, references_loaded=bool(references), position_shift=0)
    pipeline = Pipeline(settings, references, observers=obs.observers if observed else ())
    done = False
    url = (
        obs.serve(ready=lambda: (done, "replay finished" if done else "replaying"))
        if (args.serve)
        else None
    )
    try:
        with contextlib.ExitStack() as stack:
            sinks: list[AlertSink] = []
            if args.alerts:
                stream: BinaryIO = stack.enter_context(open(args.alerts, "wb"))
                sinks.append(JsonlSink(stream))
            notifier = _notifier(settings, stack)
            if notifier is not None:
                sinks.append(notifier)
            obs.attach(pipeline, sinks=sinks)
            sink: AlertSink | None = (
                obs.alert_sink(sinks)
                if observed
                else (FanoutSink(sinks) if len(sinks) > 1 else (sinks[0] if sinks else None))
            )
            try:
                result = replay(
                    args.events, pipeline, sink, progress=None if args.progress else False
                )
            except OSError as exc:
                raise ConfigError(f"{args.events}: cannot read: {exc.strerror or exc}") from exc
        format_summary(result, sys.stdout)
        sys.stdout.flush()
        done = True
        if args.serve:
            if url is None:  # metrics disabled, or the address taken (logged)
                raise ConfigError(
                    f"metrics.listen: replay --serve has no server on "
                    f"{settings.metrics.listen} (metrics disabled or the address in use)"
                )
            _serve_until_stopped(url)
    finally:
        obs.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    import logging

    from monitor.app import build_app, run_worker
    from monitor.malloc_tuning import keep_freed_memory
    from monitor.references import load_references

    keep_freed_memory()
    settings = load_settings(args.config)
    if args.bootstrap:
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
            }
        )
    ref_path = args.reference or settings.reference.path
    references = load_references(ref_path) if ref_path else {}
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from monitor.broker_watch import install_repeat_filter

    install_repeat_filter()
    from monitor.http_server import Observability

    settings = _observability_settings(settings, args)
    from monitor.kafka_probe import check_access
    from monitor.topics import ensure_topics

    # Refused credentials or certificates end the worker here, naming the setting; the Kafka
    # clients would retry them for ever like an unreachable broker.
    check_access(settings.kafka)
    partitions = ensure_topics(settings)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": partitions})}
    )
    obs = Observability(settings, references_loaded=bool(references))
    url = obs.serve()
    with contextlib.ExitStack() as stack:
        stack.callback(obs.close)
        sinks: list[AlertSink] = []
        if args.alerts:
            stream: BinaryIO = stack.enter_context(open(args.alerts, "ab"))
            sinks.append(JsonlSink(stream))
        notifier = _notifier(settings, stack)
        if notifier is not None:
            sinks.append(notifier)
        app, _ = build_app(settings, references, sinks, args.stats, obs)
        if url:
            print(f"driftwatch worker: metrics and status page on {url}/", file=sys.stderr)
        print(
            f"driftwatch worker: group {settings.kafka.group_id} on "
            f"{settings.kafka.bootstrap_servers}, topics {settings.topics.predictions}, "
            f"{settings.topics.features}, {settings.topics.labels}; "
            f"dead letters to {settings.topics.dead_letter}",
            file=sys.stderr,
            flush=True,
        )
        run_worker(app, args.loglevel)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from monitor.scenarios.evaluate import evaluate_files, format_evaluation

    try:
        ev = evaluate_files(args.alerts, args.truth, grace_events=args.grace_events)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"evaluate: {exc}") from exc
    print(format_evaluation(ev))
    return 0


def _reference_build(args: argparse.Namespace) -> int:
    from monitor.references import build_references, write_references

    settings = load_settings(args.config)
    try:
        profiles = build_references(args.events, settings)
    except OSError as exc:
        raise ConfigError(f"{args.events}: cannot read: {exc.strerror or exc}") from exc
    write_references(profiles, args.out)
    for p in profiles:
        print(
            f"{p.model} {p.model_version}: {p.events:,} events, {len(p.numeric)} numeric and "
            f"{len(p.categorical)} categorical features, id {p.id}",
        )
    print(f"wrote {args.out}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rules = settings.rule_set()
    print(f"{args.config}: OK")
    print(f"  window: {settings.window.size} events; warm-up: {settings.reference.warmup_events}")
    print(
        f"  false-alarm budget: one per {settings.calibration.false_alarm_days:g} days at "
        f"{settings.calibration.events_per_second:g} events/s"
    )
    for name, rule in sorted(rules.rules.items()):
        print(
            f"  {name}: for {rule.for_seconds:g}s, keep_firing_for "
            f"{rule.keep_firing_for_seconds:g}s, severity {rule.severity}"
        )
    return 0


def _observability_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="override metrics.listen (metrics, health and status page; default 127.0.0.1:9464)",
    )
    p.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export spans by OTLP/HTTP to this URL (e.g. http://127.0.0.1:4318/v1/traces)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    from monitor.scenarios.simulate import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="driftwatch", description="Streaming drift and observability monitor for ML serving."
    )
    parser.add_argument("--version", action="version", version=f"driftwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="write a synthetic prediction stream with known incidents")
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--events", type=int, required=True, help="prediction events to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="events file (JSONL)")
    p.add_argument("--truth", help="write the injected incidents here (JSON)")
    p.add_argument(
        "--to",
        help="publish to Kafka: kafka://HOST:PORT/TOPIC (labels to topics.labels of --config)",
    )
    p.add_argument(
        "--config",
        help="settings (YAML): the labels and features topics for --to, and the kafka "
        "section's security settings (security_protocol, sasl_*, ssl_*)",
    )
    p.add_argument(
        "--batch", type=int, default=500, help="events per Kafka message (1: no envelope)"
    )
    p.add_argument("--rate", type=float, default=100.0, help="events per second (event time)")
    p.add_argument("--onset", type=float, default=0.5, help="incident start, fraction of events")
    p.add_argument(
        "--start",
        help="first event's time, RFC 3339 or 'now' (the last event about now); "
        "default 2026-01-01T00:00:00Z, or 'now' with --to",
    )
    p.set_defaults(func=_simulate)

    p = sub.add_parser("replay", help="run the monitor over a JSONL file of events")
    p.add_argument("events", help="events file (JSONL)")
    p.add_argument("--config", help="settings (YAML); defaults apply without one")
    p.add_argument("--reference", help="reference profiles (from `reference build`)")
    p.add_argument("--alerts", help="write alert state changes here (JSONL)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve metrics and the status page during the replay and after it until Ctrl-C",
    )
    _observability_flags(p)
    p.set_defaults(func=_replay)

    p = sub.add_parser("run", help="run the live worker on Kafka (Faust)")
    p.add_argument("--config", help="settings (YAML); defaults apply without one")
    p.add_argument("--reference", help="reference profiles (from `reference build`)")
    p.add_argument("--alerts", help="append alert state changes here (JSONL)")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")
    p.add_argument("--stats", help="rewrite worker counters to this JSON file every second")
    p.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    _observability_flags(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("evaluate", help="score alerts against a simulation's truth")
    p.add_argument("--alerts", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--grace-events", type=int, default=20_000)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("reference", help="reference profiles")
    rsub = p.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    b = rsub.add_parser("build", help="build reference profiles from an events file")
    b.add_argument("events")
    b.add_argument("--out", required=True)
    b.add_argument("--config")
    b.set_defaults(func=_reference_build)

    p = sub.add_parser("check-config", help="validate a settings file and print what it means")
    p.add_argument("config")
    p.set_defaults(func=_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftwatch`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"driftwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
