"""rollback-lab: helpers the lab's notebooks import.

One module per concept: ``template`` (CloudFormation templates), ``pipeline_config``
(CircleCI config.yml), ``services`` (the local AWS and CircleCI), ``localci`` (the local
CircleCI engine and API), ``circleci`` (the API client and its models), ``stack_events``
(events, phases and the timeline chart), ``checks`` (the lab's rules and rubric), ``cli``.
"""

__version__ = "0.1.0"
