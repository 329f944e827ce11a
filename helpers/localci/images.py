"""Image profiles: which programs a job's docker image gives its steps.

Without Docker the engine cannot run an image, but it can run a step with only the programs
that image would have. That is what the lab teaches: ``aws`` is missing from ``alpine``, ``git``
from ``amazon/aws-cli``. The profiles are data (one table below); add a row to teach a new image.
The checks of ``rollback-lab check`` read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shell = Literal["bash", "sh"]

# Programs every Linux image has (coreutils or busybox, plus the few a shell script leans on).
_CORE = frozenset(
    """
    sh awk basename cat chmod chown cp cut date dd df dirname du echo env expr false find grep
    gzip head hostname id kill ln ls mkdir mktemp mv nproc od printf ps pwd readlink realpath rm
    rmdir sed seq sleep sort stat tail tar tee test touch tr true uname uniq wc which whoami xargs
    yes zcat gunzip
    """.split()
)
_DEBIAN = _CORE | {"bash", "apt-get", "dpkg", "perl", "less"}
_BUILDPACK = _DEBIAN | {"git", "ssh", "scp", "curl", "wget", "make", "gcc", "unzip", "python3"}
_BUSYBOX = _CORE | {"ash", "vi", "wget", "unzip", "apk", "nc"}
_CIMG_BASE = _DEBIAN | {
    "git",
    "ssh",
    "scp",
    "curl",
    "wget",
    "jq",
    "make",
    "unzip",
    "zip",
    "sudo",
    "gpg",
    "docker",
    "docker-compose",
    "xz",
}
_PYTHON = {"python", "python3", "pip", "pip3"}
_NODE = {"node", "npm", "npx", "yarn", "corepack"}


@dataclass(frozen=True)
class ImageProfile:
    """What a docker image offers a step: its shell and the programs on its PATH."""

    name: str
    shell: Shell
    tools: frozenset[str]

    def has(self, tool: str) -> bool:
        return tool in self.tools


def _p(name: str, shell: Shell, tools: frozenset[str] | set[str]) -> ImageProfile:
    return ImageProfile(name=name, shell=shell, tools=frozenset(tools))


# Repository (without tag) -> profile. Variants by tag are handled in `profile_for`.
PROFILES: dict[str, ImageProfile] = {
    # Amazon Linux 2 with the AWS CLI v2: no git, no ssh (checkout falls back to a native client).
    "amazon/aws-cli": _p(
        "amazon/aws-cli", "bash", _CORE | {"bash", "aws", "yum", "rpm", "curl", "less", "groff"}
    ),
    "alpine": _p("alpine", "sh", _BUSYBOX),
    "busybox": _p("busybox", "sh", _BUSYBOX - {"apk"}),
    "ubuntu": _p("ubuntu", "bash", _DEBIAN),
    "debian": _p("debian", "bash", _DEBIAN),
    "buildpack-deps": _p("buildpack-deps", "bash", _BUILDPACK),
    "cimg/base": _p("cimg/base", "bash", _CIMG_BASE),
    "cimg/python": _p("cimg/python", "bash", _CIMG_BASE | _PYTHON | {"pipenv", "poetry"}),
    "cimg/aws": _p("cimg/aws", "bash", _CIMG_BASE | _PYTHON | {"aws", "sam"}),
    "cimg/node": _p("cimg/node", "bash", _CIMG_BASE | _NODE),
    "python": _p("python", "bash", _BUILDPACK | _PYTHON),
    "node": _p("node", "bash", _BUILDPACK | _NODE),
}

# Images whose official tags come in slim/alpine variants.
_SLIM = {
    "python": _p("python:slim", "bash", _DEBIAN | _PYTHON),
    "node": _p("node:slim", "bash", _DEBIAN | _NODE),
}
_ALPINE = {
    "python": _p("python:alpine", "sh", _BUSYBOX | _PYTHON),
    "node": _p("node:alpine", "sh", _BUSYBOX | _NODE),
}

_REGISTRY_PREFIXES = ("docker.io/library/", "docker.io/", "library/", "public.ecr.aws/")


def _repository_and_tag(image: str) -> tuple[str, str]:
    image = image.strip().lower()
    image = image.split("@", 1)[0]  # digest
    for prefix in _REGISTRY_PREFIXES:
        if image.startswith(prefix):
            image = image[len(prefix) :]
            break
    if image.startswith("circleci/"):  # the legacy images are the cimg ones' parents
        image = "cimg/" + image[len("circleci/") :]
    repository, _, tag = image.partition(":")
    host, slash, rest = repository.partition("/")
    if slash and ("." in host or ":" in host):  # another registry (ghcr.io/x/y): drop the host
        repository = rest
    return repository, tag or "latest"


def profile_for(image: str) -> ImageProfile | None:
    """The profile of a docker image name such as ``python:3.12-slim``; None when unknown."""
    repository, tag = _repository_and_tag(image)
    if "alpine" in tag and repository in _ALPINE:
        return _ALPINE[repository]
    if "slim" in tag and repository in _SLIM:
        return _SLIM[repository]
    if repository in PROFILES:
        return PROFILES[repository]
    return None
