"""The local CircleCI, in layers as nektos/act builds its runner.

``config`` (parse and compile 2.1) → ``planner`` (workflows → jobs in dependency order) →
``runner`` (jobs and steps) → ``environment`` (a host shell shaped by the job's image, see
``images``). ``observer`` is the seam to whoever records a run: the API store, or the CLI's
printer. The HTTP API (``api``) and its SQLite ``store`` sit on top.
"""
