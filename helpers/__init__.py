"""rollback-lab: helpers the lab's notebooks import.

One module per concept: ``template`` (CloudFormation templates), ``pipeline_config``
(CircleCI config.yml), ``services`` (the local AWS and CircleCI), ``localci`` (the local
CircleCI engine and API), ``circleci`` (the API client and its models), ``stack_events``
(events, phases and the timeline chart), ``checks`` (the lab's rules and rubric), ``cli``.
"""

import sys

__version__ = "0.1.0"

# jsonschema (used by moto, check-jsonschema, nbformat) builds an RFC 3987 grammar with the
# optional package ``rfc3987_syntax`` when it is imported: 1-2 s of start-up in every process
# (the services daemon, each notebook kernel), the largest single import measured. Nothing the
# kit validates uses the ``iri`` formats, so the package is marked "not importable" and
# jsonschema skips those formats.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

if "ipykernel" in sys.modules:
    # In a notebook the tables carry whole sentences (cfn-lint's messages, AWS's reasons, the
    # checks' hints); pandas cuts every cell at 50 characters, which hides the point of a cell.
    import pandas

    pandas.set_option("display.max_colwidth", None)
