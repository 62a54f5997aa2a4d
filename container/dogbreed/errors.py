"""Error taxonomy: what the user must fix vs. what is our bug, and HTTP errors for serving."""


class UserError(Exception):
    """A problem the user can fix (bad hyperparameter, missing channel, missing weights).

    Training reports its message as the first line of output/failure, without a traceback.
    """


class ArtifactError(UserError):
    """The model directory does not hold a loadable artifact."""


class ServingError(Exception):
    """A request the server refuses; carries the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class UnsupportedMediaType(ServingError):
    status = 415


class NotAcceptable(ServingError):
    status = 406


class PayloadTooLarge(ServingError):
    status = 413
