"""One small piece per step kind, as nektos/act keeps one file per step type.

``KINDS`` maps a compiled step's kind to the function that runs it; ``when`` (on_success,
on_fail, always) is decided by the runner around them, not inside.
"""

from __future__ import annotations

from helpers.localci.steps import files, unsupported
from helpers.localci.steps.base import StepContext, StepKind, StepOutcome
from helpers.localci.steps.checkout import checkout_step
from helpers.localci.steps.run import run_step

KINDS: dict[str, StepKind] = {
    "run": run_step,
    "checkout": checkout_step,
    "persist_to_workspace": files.persist_to_workspace,
    "attach_workspace": files.attach_workspace,
    "store_artifacts": files.store_artifacts,
    "store_test_results": files.store_test_results,
    "save_cache": files.save_cache,
    "restore_cache": files.restore_cache,
    "setup_remote_docker": unsupported.setup_remote_docker,
    "add_ssh_keys": unsupported.add_ssh_keys,
}

__all__ = ["KINDS", "StepContext", "StepKind", "StepOutcome"]
