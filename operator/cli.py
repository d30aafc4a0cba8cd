"""`citywok operator`: run the kopf operator that reconciles FingerprintDB resources."""

from __future__ import annotations

import argparse
import logging
import os

from citywok.operator.spec import DEFAULT_IMAGE

from citywok import settings
from citywok.command import Subcommands

LOG_FORMATS = ("json", "plain", "full")


def register(sub: Subcommands) -> None:
    """Add this part's subcommands."""
    p = sub.add_parser("operator", help="run the FingerprintDB operator (kopf)",
                       description="Reconcile FingerprintDB resources into matcher Deployments and roll "
                                   "them between shard versions.")
    p.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                   help="watch this namespace (repeatable; glob patterns allowed); default: all namespaces")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--image", default=settings.operator_image(DEFAULT_IMAGE),
                   help="image for pods whose spec names none (env CITYWOK_IMAGE)")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                   help="kopf liveness endpoint URL ('' to disable)")
    p.add_argument("--metrics-port", type=int, default=8081, help="Prometheus metrics port (0 to disable)")
    p.add_argument("--peering", default="citywok",
                   help="kopf peering name: one active operator among replicas "
                        "(needs operator/peering-crds.yaml and peering.yaml; else --standalone)")
    p.add_argument("--standalone", action="store_true", help="ignore peering (a single operator)")
    p.add_argument("--priority", type=int, default=0, help="peering priority (higher wins)")
    p.add_argument("--resync", type=float, default=30.0,
                   help="seconds between level-based reconciles without any watch event")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="json", help="log line format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import kopf
    from citywok.operator import handlers  # noqa: F401  (registers the handlers)
    from citywok.operator.kube import Kube, api_client
    from citywok.operator.reconcile import Options

    from citywok.errors import CommandError

    if args.resync <= 0:
        raise CommandError("--resync must be a positive number of seconds")
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    root = logging.getLogger()
    root.handlers[:] = []  # kopf installs its own (structured) handler
    kopf.configure(verbose=logging.getLogger().level <= logging.DEBUG,
                   log_format={"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN,
                               "full": kopf.LogFormat.FULL}[args.log_format],
                   log_refkey="k8s")
    logging.getLogger("kopf.objects").addFilter(_quiet_wakeups)
    try:
        kube = Kube(api_client(args.kubeconfig))
    except Exception as e:  # no kubeconfig, unreachable server, refused credentials: one line, no traceback
        raise CommandError(f"cannot reach the Kubernetes API: {e}") from None
    memo = kopf.Memo(kube=kube, options=Options(default_image=args.image), resync=args.resync,
                     debounce=0.2, metrics_port=args.metrics_port, wakers={})
    kopf.run(clusterwide=not args.namespace, namespaces=args.namespace,
             liveness_endpoint=args.liveness or None, standalone=args.standalone,
             peering_name=None if args.standalone else args.peering, priority=args.priority, memo=memo)
    return 0


def _quiet_wakeups(record: logging.LogRecord) -> bool:
    """Drop kopf's "Handler ... succeeded" lines for the wake-up handlers (one per watch event)."""
    msg = str(record.msg)
    return not (msg.startswith("Handler '") and ("'child-" in msg or "'fingerprintdb_changed'" in msg))
