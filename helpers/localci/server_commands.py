"""``rollback-lab link SLUG PATH``: make a local git repository a CircleCI project."""

from __future__ import annotations

import argparse
import json

from helpers.localci.projects import link_project


def configure_link(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slug", help="project slug, e.g. gh/udacity/rollback-lab")
    parser.add_argument("path", help="the local git repository holding .circleci/config.yml")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="local-services instance (default: $ROLLBACK_LAB_STATE_DIR, else the user cache)",
    )
    parser.add_argument("--json", action="store_true", help="print the project as JSON")


def run_link(args: argparse.Namespace) -> int:
    project = link_project(args.slug, args.path, state_dir=args.state_dir)
    if getattr(args, "json", False):
        print(json.dumps({"slug": project.slug, "id": project.id, "path": str(project.repo_path)}))
    else:
        print(f"linked {project.slug} -> {project.repo_path}")
    return 0
