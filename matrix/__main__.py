"""python -m matrix: the logic behind scripts/run_matrix.sh (see matrix/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from matrix.config import (
    DEFAULT_MATRIX_FILE,
    PROJECT_ROOT,
    QUICK_MATRIX_FILE,
    MatrixFile,
    MatrixFileError,
    MatrixSettings,
    MatrixSettingsError,
    load_matrix_file,
    load_settings,
)
from matrix.measure.autoscale import AUTOSCALER_RECIPE, stack_up_would_disable
from matrix.measure.cluster_target import ClusterTarget, ClusterTargetError, load_cluster_target
from matrix.measure.target_build import ensure_target_image, load_onto_cluster
from matrix.measure.target_smoke import check_target
from matrix.measure.user_locustfile import check_on_stack_locust
from matrix.report.report import write_report
from matrix.runner import RUN_FILE, MatrixRunError, MatrixRunner, prepare_run_dir
from stack.engine import DockerEngine, DockerError

EXIT_INTERRUPTED = 130
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/run_matrix.sh",
        description="Measures each replica x CPU x memory cell of the api service under load and "
        "writes results/<timestamp>/ with summary.csv, report.md/html and plots.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--matrix",
        type=Path,
        default=None,
        help=f"matrix file (default {DEFAULT_MATRIX_FILE.relative_to(PROJECT_ROOT)})",
    )
    source.add_argument(
        "--quick",
        action="store_true",
        help=f"the small matrix {QUICK_MATRIX_FILE.relative_to(PROJECT_ROOT)} "
        "(a few minutes on a 2-core machine)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue this interrupted run (default: the latest unfinished run "
        "of the same matrix is resumed automatically)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run even when an unfinished one could be resumed",
    )
    parser.add_argument(
        "--stack-name",
        default=None,
        help="Swarm stack to measure (env STACK_NAME, default penguins)",
    )
    parser.add_argument(
        "--nginx-port",
        type=int,
        default=None,
        help="Nginx's published port on 127.0.0.1 (env NGINX_PORT, default 8000)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="measure the local multi-node Swarm of scripts/cluster_up.sh (its "
        "engine, stack and Nginx; it deployed the stack, so no stack_up)",
    )
    parser.add_argument(
        "--no-stack-up",
        action="store_true",
        help="do not run scripts/stack_up.sh first (the stack is already up)",
    )
    parser.add_argument(
        "--stack-down",
        action="store_true",
        help="remove the stack with scripts/stack_down.sh at the end",
    )
    target = parser.add_argument_group(
        "a quick try of another service (the matrix file's target block from the command line)"
    )
    target.add_argument(
        "--target-image",
        default=None,
        metavar="IMAGE",
        help="a local image of the model API to measure in place of the penguin service",
    )
    target.add_argument(
        "--target-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the port its container listens on",
    )
    target.add_argument(
        "--request-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML with its `requests:` (as in the target block; body_file relative to this "
        "file) and optionally `health_path:` and `env:`",
    )
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="check the matrix file, print the cells and the time they need, exit",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="rebuild summary, plots and report of a run from its cells",
    )
    return parser


TARGET_FLAGS = ("--target-image", "--target-port", "--request-file")
# What a request file may hold: the target block without the image and port.
REQUEST_FILE_KEYS = ("requests", "health_path", "env")


class TargetFlagsError(ValueError):
    """The target flags cannot build a target block; the message names the flag."""


def target_from_flags(
    image: str | None, port: int | None, request_file: Path | None
) -> dict[str, Any] | None:
    """The target block --target-image, --target-port and --request-file stand for (None when
    none is given). The request file's body_file paths are made absolute from its folder."""
    given = [image is not None, port is not None, request_file is not None]
    if not any(given):
        return None
    if not all(given):
        missing = [flag for flag, present in zip(TARGET_FLAGS, given, strict=True) if not present]
        raise TargetFlagsError(
            f"{', '.join(TARGET_FLAGS)} go together; missing {', '.join(missing)}"
        )
    assert request_file is not None
    try:
        content = yaml.safe_load(request_file.read_text(encoding="utf-8"))
    except OSError as error:
        raise TargetFlagsError(f"--request-file {request_file}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise TargetFlagsError(f"--request-file {request_file}: not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise TargetFlagsError(
            f"--request-file {request_file}: a mapping with requests: (and optionally "
            "health_path:, env:), as in the matrix file's target block"
        )
    unknown = sorted(set(content) - set(REQUEST_FILE_KEYS))
    if unknown:
        raise TargetFlagsError(
            f"--request-file {request_file}: unknown field(s) {', '.join(unknown)}; "
            f"it holds {', '.join(REQUEST_FILE_KEYS)}"
        )
    requests = content.get("requests")
    if isinstance(requests, list):
        folder = request_file.resolve().parent
        content["requests"] = [
            {**entry, "body_file": str(folder / str(entry["body_file"]))}
            if isinstance(entry, dict) and entry.get("body_file") is not None
            else entry
            for entry in requests
        ]
    return {"image": image, "port": port, **content}


def matrix_as_run(path: Path, matrix: MatrixFile, from_flags: bool) -> str:
    """The matrix file's text as a run keeps it: with a target from the flags, the file plus
    that block (its bodies inline), so --report-only and a resume read the same plan."""
    text = path.read_text(encoding="utf-8")
    if not from_flags or matrix.target is None:
        return text
    block = matrix.target.model_dump(mode="json", exclude_defaults=True)
    for request in block["requests"]:
        request.pop("body_file", None)
    return (
        text.rstrip("\n")
        + "\n\n# From --target-image, --target-port and --request-file.\n"
        + yaml.safe_dump({"target": block}, sort_keys=False)
    )


def describe_plan(matrix: MatrixFile) -> str:
    cells = matrix.cell_list()
    per_cell = matrix.expected_load_seconds()
    trials = f"{matrix.trials}-{matrix.max_trials}" if matrix.adaptive else f"{matrix.trials}"
    lines = [
        f"matrix '{matrix.name}': {len(cells)} cells x {trials} trial(s), "
        f"{matrix.profile.kind} profile, about {per_cell * len(cells) / 60:.1f} min of load "
        "plus convergence"
    ]
    if matrix.target is not None:
        target = matrix.target
        lines.append(
            f"  target: {target.image} (port {target.port}, health {target.health_path}), "
            f"{len(target.requests)} request(s), in place of the penguin service"
        )
    lines += [f"  {cell.cell_id} (total {cell.total_cpus:g} CPU)" for cell in cells]
    return "\n".join(lines)


def _stack_script(name: str, settings: MatrixSettings, cluster: ClusterTarget | None) -> None:
    script = PROJECT_ROOT / "scripts" / name
    if not script.is_file():
        raise MatrixRunError(
            f"{script} is missing; deploy the stack yourself and pass --no-stack-up"
        )
    env = {**os.environ, "STACK_NAME": settings.stack_name, "NGINX_PORT": str(settings.nginx_port)}
    if cluster is not None:
        # The cluster's stack is on its manager's engine, not the host's.
        env["DOCKER_HOST"] = cluster.docker_host
    result = subprocess.run([str(script)], env=env, cwd=PROJECT_ROOT, check=False)
    if result.returncode != 0:
        raise MatrixRunError(f"scripts/{name} failed with exit code {result.returncode}")


def _target_cluster() -> ClusterTarget:
    """The running cluster, once its route is checked: its engine, stack and Nginx are measured
    instead of the host's."""
    cluster = load_cluster_target()
    cluster.check_route()
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cluster and (args.stack_name or args.nginx_port):
        parser.error(
            "--cluster takes the stack and Nginx's address from the cluster's env file; "
            "leave out --stack-name and --nginx-port"
        )
    # Started in the background by a non-interactive shell, SIGINT arrives ignored; the restore
    # path must still run on Ctrl-C / kill -INT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The flags override the environment the stack scripts share with us.
    overrides: dict[str, object] = {}
    if args.stack_name:
        overrides["stack_name"] = args.stack_name
    if args.nginx_port:
        overrides["nginx_port"] = args.nginx_port
    cluster = None
    if args.cluster and not (args.validate_only or args.report_only):
        try:
            cluster = _target_cluster()
        except ClusterTargetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        overrides.update(stack_name=cluster.stack_name, base_url_override=cluster.nginx_url)
    try:
        settings = load_settings(**overrides)
    except MatrixSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    matrix_path = QUICK_MATRIX_FILE if args.quick else args.matrix or DEFAULT_MATRIX_FILE
    base_dir = None
    if args.report_only:
        matrix_path = args.report_only / "matrix.yaml"
        # A target's body_file is relative to the matrix file the run started from.
        try:
            info = json.loads((args.report_only / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(
                f"error: --report-only {args.report_only}: no readable {RUN_FILE} ({error})",
                file=sys.stderr,
            )
            return EXIT_USAGE
        base_dir = Path(info["matrix_file"]).parent if info.get("matrix_file") else None
    try:
        target = target_from_flags(args.target_image, args.target_port, args.request_file)
        if target is not None and args.report_only:
            raise TargetFlagsError(
                "--report-only rebuilds a run as it was; leave out the target flags"
            )
        matrix = load_matrix_file(
            matrix_path.resolve(), target, base_dir, check_files=not args.report_only
        )
    except TargetFlagsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MatrixFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.validate_only:
        print(describe_plan(matrix))
        return 0
    if args.report_only:
        print(write_report(args.report_only, matrix, info))
        return 0
    if cluster is None and stack_up_would_disable(matrix, args.no_stack_up):
        print(
            f"error: {matrix_path} has cells with autoscale: on; {AUTOSCALER_RECIPE}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(describe_plan(matrix), flush=True)
    try:
        engine = DockerEngine.from_env(cluster.docker_host if cluster is not None else None)
        # Images are built on this host's engine, also for a cluster (which loads them from it).
        host_engine = engine if cluster is None else DockerEngine.from_env(None)
        ensure_target_image(matrix, host_engine, lambda line: print(line, flush=True))
        if cluster is not None:
            matrix = load_onto_cluster(matrix, cluster, lambda line: print(line, flush=True))
        # A target is refused here, naming the field, before the stack or the matrix starts.
        check_target(
            matrix,
            engine,
            settings.stack_name,
            lambda line: print(line, flush=True),
            reachable=cluster is None,
        )
        if not args.no_stack_up and cluster is None:
            _stack_script("stack_up.sh", settings, cluster)
        if matrix.load_generator.locustfile is not None:
            check_on_stack_locust(
                matrix.load_generator.locustfile,
                engine,
                settings.stack_name,
                cluster.docker_host if cluster is not None else None,
                lambda line: print(line, flush=True),
            )
        run_dir, info = prepare_run_dir(
            matrix,
            matrix_path.resolve(),
            settings,
            args.resume,
            args.fresh,
            matrix_as_run(matrix_path, matrix, target is not None),
        )
        print(f"results: {run_dir}", flush=True)
        MatrixRunner(matrix, settings, run_dir, info, engine, cluster).run()
    except KeyboardInterrupt:
        print(
            "interrupted: the api service was restored; measured cells are kept. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (MatrixRunError, DockerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.stack_down:
            try:
                _stack_script("stack_down.sh", settings, cluster)
            except MatrixRunError as error:
                print(f"warning: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
