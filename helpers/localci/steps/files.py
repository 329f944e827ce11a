"""Steps that move files: workspace, artifacts, test results, caches (all kept locally)."""

from __future__ import annotations

import glob
import hashlib
import json
import platform
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from helpers.localci.steps.base import StepContext, StepOutcome


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def persist_to_workspace(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    root = ctx.path(str(args["root"]))
    paths = args["paths"]
    paths = [paths] if isinstance(paths, str) else list(paths)  # type: ignore[arg-type]
    for pattern in paths:
        matches = sorted(glob.glob(str(root / str(pattern)), recursive=True))
        if not matches:
            ctx.emit(f"The specified paths did not match any files in {root}\n")
            return StepOutcome.failed(1)
        for match in matches:
            rel = Path(match).relative_to(root)
            ctx.emit(f"Adding {rel}\n")
            _copy(Path(match), ctx.workspace / rel)
    ctx.emit("Total size uploaded: local\n")
    return StepOutcome.ok()


def attach_workspace(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    at = ctx.path(str(args["at"]))
    at.mkdir(parents=True, exist_ok=True)
    if not ctx.workspace.exists() or not any(ctx.workspace.iterdir()):
        ctx.emit("Workspace is empty: no upstream job persisted anything\n")
        return StepOutcome.ok()
    ctx.emit(f"Downloading workspace layers\nApplying workspace layers to {at}\n")
    for item in ctx.workspace.iterdir():
        _copy(item, at / item.name)
    return StepOutcome.ok()


def store_artifacts(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    src = ctx.path(str(args["path"]))
    if not src.exists():
        ctx.emit(f"No artifact files found at {src}\n")
        return StepOutcome.ok()  # CircleCI does not fail the step for a missing path
    destination = str(args.get("destination") or src.name).strip("/")
    dst = ctx.artifacts / destination
    _copy(src, dst)
    files = [dst] if dst.is_file() else [p for p in dst.rglob("*") if p.is_file()]
    for f in files:
        ctx.emit(f"Uploading {f.relative_to(ctx.artifacts)}\n")
    return StepOutcome.ok()


def store_test_results(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    src = ctx.path(str(args["path"]))
    if not src.exists():
        ctx.emit(f"No test results found at {src}\n")
        return StepOutcome.ok()
    _copy(src, ctx.test_results / src.name)
    ctx.emit(f"Archiving the following test results\n  * {src}\n")
    return StepOutcome.ok()


# -- caches --------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def cache_key(ctx: StepContext, template: str) -> str:
    """A cache key template ({{ .Branch }}, {{ checksum "f" }}, {{ epoch }}…) filled in."""

    def fill(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr == ".Branch":
            return ctx.pipeline.branch or ""
        if expr == ".Revision":
            return ctx.pipeline.revision
        if expr == ".BuildNum":
            return str(ctx.build_num)
        if expr == ".Environment.CIRCLE_JOB" or expr == ".Job":
            return ctx.job_name
        if expr.startswith(".Environment."):
            return ctx.variables.get(expr[len(".Environment.") :], "")
        if expr == "epoch":
            return str(int(time.time()))
        if expr == "arch":
            return f"{platform.system().lower()}-{platform.machine()}"
        m = re.fullmatch(r'checksum\s+"([^"]+)"', expr)
        if m:
            f = ctx.path(m.group(1))
            return hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else ""
        return match.group(0)

    return _TEMPLATE.sub(fill, template)


def _cache_dir(ctx: StepContext, key: str) -> Path:
    return ctx.cache_root / hashlib.sha256(key.encode()).hexdigest()


def save_cache(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    key = cache_key(ctx, str(args["key"]))
    target = _cache_dir(ctx, key)
    if target.exists():
        ctx.emit(f"Skipping cache generation, cache already exists for key: {key}\n")
        return StepOutcome.ok()
    paths = args["paths"]
    paths = [paths] if isinstance(paths, str) else list(paths)  # type: ignore[arg-type]
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    saved: list[str] = []
    for i, text in enumerate(map(str, paths)):
        src = ctx.path(text)
        if src.exists():
            _copy(src, staging / str(i))
            saved.append(text)
        else:
            ctx.emit(f"Warning: could not find {text}\n")
    (staging / "manifest.json").write_text(
        json.dumps({"key": key, "paths": [str(p) for p in paths], "saved_at": time.time()})
    )
    staging.rename(target)
    ctx.emit(f"Creating cache archive...\nStored cache: {key} ({', '.join(saved) or 'nothing'})\n")
    return StepOutcome.ok()


def restore_cache(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    keys = args.get("keys") or [args.get("key")]
    keys = [keys] if isinstance(keys, str) else list(keys)  # type: ignore[arg-type]
    entries = []
    if ctx.cache_root.exists():
        for manifest in ctx.cache_root.glob("*/manifest.json"):
            data = json.loads(manifest.read_text())
            entries.append((data["saved_at"], data, manifest.parent))
    entries.sort(reverse=True, key=lambda e: e[0])
    for template in keys:
        prefix = cache_key(ctx, str(template))
        for _, data, folder in entries:
            if str(data["key"]).startswith(prefix):
                ctx.emit(f"Found a cache from build for key {data['key']}\n")
                for i, text in enumerate(data["paths"]):
                    src = folder / str(i)
                    if src.exists():
                        _copy(src, ctx.path(text))
                ctx.emit("Restoring cache... done\n")
                return StepOutcome.ok()
    ctx.emit(f"No cache is found for key: {', '.join(map(str, keys))}\n")
    return StepOutcome.ok()
