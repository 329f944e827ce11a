"""The local CircleCI's API errors: one class per answer, carrying CircleCI's status and words.

The backend raises them, the HTTP layer turns any of them into ``{"message": ...}`` with the
status code — as moto's ``exceptions.py`` does for AWS's error codes.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error CircleCI's API answers with ``{"message": ...}``."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class InvalidBody(BadRequest):
    def __init__(self, message: str = "Unexpected request body provided.") -> None:
        super().__init__(message)


class InvalidPageToken(BadRequest):
    def __init__(self) -> None:
        super().__init__("Invalid page-token.")


class Unauthorized(ApiError):
    status = 401


class NotLoggedIn(Unauthorized):
    def __init__(self) -> None:
        super().__init__("You must log in first.")


class InvalidToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Invalid token provided.")


class QueryTokenRefused(Unauthorized):
    def __init__(self) -> None:
        super().__init__(
            "Support for query parameter authentication has been deprecated to improve security. "
            "Please use a supported authentication method such as header-based, or basic "
            "authentication."
        )


class NotFound(ApiError):
    status = 404


class ProjectNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Project not found")


class PipelineNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Pipeline not found")


class WorkflowNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Workflow not found")


class JobNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Job not found")


class EnvVarNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Environment variable not found")


class RouteNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Not found")


class MethodNotAllowed(ApiError):
    status = 405

    def __init__(self) -> None:
        super().__init__("Method not allowed")
