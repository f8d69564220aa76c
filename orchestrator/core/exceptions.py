"""The orchestrator's errors, rooted at one class. The API maps them to status codes in
api/errors.py."""


class OrchestratorError(Exception):
    """Something went wrong in the orchestrator."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)

    @property
    def message(self) -> str:
        return str(self)


class InvalidUpload(OrchestratorError):
    """Raised when an upload cannot be built: the message says what to change."""


class UploadTooLarge(InvalidUpload):
    """Raised when an upload is over a size or file-count limit."""


class NotFound(OrchestratorError):
    """Raised when a website or build does not exist, or is not the caller's."""


class Unauthorized(OrchestratorError):
    """Raised when a request carries no valid token."""


class Forbidden(OrchestratorError):
    """Raised when a valid token may not do what it asks (a user asking for admin's things)."""


class Conflict(OrchestratorError):
    """Raised when a request cannot apply to the thing's present state (an edit of a website
    whose dependencies would change, or with no live preview)."""


class InvalidTransition(OrchestratorError):
    """Raised when a build is asked to move to a status its current one does not allow."""


class ServiceUnavailable(OrchestratorError):
    """Raised when Redis, the database or the Docker engine cannot be reached."""


class RuntimeUnavailable(ServiceUnavailable):
    """Raised when the Docker engine cannot be reached or the build image is missing."""


class RegistryUnreachable(ServiceUnavailable):
    """Raised when installing dependencies failed because the package registry could not be
    reached (a network fault, not the project's)."""


class EgressUnenforced(ServiceUnavailable):
    """Raised when this host cannot confine build containers to the registry (no iptables,
    no permission): a worker then builds nothing, unless the operator opened egress."""


class HostBusy(ServiceUnavailable):
    """Raised when a sleeping preview cannot be woken now: its host is short of memory."""


class NoFreePort(OrchestratorError):
    """Raised when every port of the preview range is taken."""


class BuildFailed(OrchestratorError):
    """Raised when a build step fails; carries the step and a cause a user can act on."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


class Superseded(Exception):
    """Raised in an attempt of a build that no longer holds it: it was declared lost (its worker
    paused, say) and the build was queued again, cancelled or failed. Its writes are refused and
    it stops its own work. Not an OrchestratorError, so that no handler of faults takes it for
    one and reports it."""

    def __init__(self, build_id: str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of build {build_id} no longer holds the build")
        self.build_id, self.attempt = build_id, attempt


class QuotaExceeded(OrchestratorError):
    """Raised when a user is past one of their quotas; ``retry_after``: seconds until it may pass."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
