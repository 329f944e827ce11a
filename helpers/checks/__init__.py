"""``rollback-lab check`` and ``cleanup``: the lab's mistakes found before anything runs, the
exercise's rubric, and the stacks a failed rollback left behind.

Notebooks call :func:`check`, :func:`rubric`, :func:`list_lab_stacks` and
:func:`delete_lab_stacks`; each result shows as a table.
"""

from helpers.checks.check import check, check_config, check_template
from helpers.checks.cleanup import DEFAULT_PREFIX, LabStack, delete_lab_stacks, list_lab_stacks
from helpers.checks.findings import Finding, Findings
from helpers.checks.rubric import Rubric, RubricItem, rubric

__all__ = [
    "DEFAULT_PREFIX",
    "Finding",
    "Findings",
    "LabStack",
    "Rubric",
    "RubricItem",
    "check",
    "check_config",
    "check_template",
    "delete_lab_stacks",
    "list_lab_stacks",
    "rubric",
]
