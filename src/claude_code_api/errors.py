"""The gateway's one exception tree; each dialect renders it in its own envelope.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error (param, code)
    │   └── Unsupported               400 a parameter we cannot honour
    ├── Unauthorized                  401 no key, or not a valid key
    ├── Forbidden                     403 the key may not do this (a model it is not for)
    ├── ModelNotFound                 404 model_not_found
    ├── NotFound                      404 a route or object that does not exist
    ├── Conflict                      409 the object is in a state that forbids this
    ├── PayloadTooLarge               413 an upload over the configured size
    ├── Overloaded                    429 the pool and its queue are full (Retry-After)
    ├── RateLimited                   429 the key's requests per minute or at once
    ├── BudgetExceeded                429 insufficient_quota (Anthropic: 402 billing_error)
    ├── StateUnavailable              503 the shared state (Redis) cannot be reached
    └── UpstreamError                 an error from Claude Code or the API behind it
        ├── UpstreamRateLimited       429 the Anthropic API said 429 (Retry-After)
        ├── UpstreamOverloaded        503 the Anthropic API is overloaded or failing
        ├── UpstreamAuthFailed        502 Claude is not logged in / the key is rejected
        ├── UpstreamRejected          400 the Anthropic API refused the request as built
        ├── WorkerCrashed             502 the CLI process died mid-turn
        └── WorkerTimeout             504 the CLI went silent for too long
"""

from __future__ import annotations


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})  # extra response headers (x-ratelimit-*)
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unsupported(InvalidRequest):
    code = "unsupported_parameter"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "file_too_large"


class Overloaded(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "gateway_busy"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class StateUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "shared_state_unavailable"


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_error"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamOverloaded(UpstreamError):
    status = 503
    type = "overloaded_error"
    code = "upstream_overloaded"


class UpstreamAuthFailed(UpstreamError):
    status = 502
    type = "authentication_error"
    code = "upstream_auth_failed"


class UpstreamRejected(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"


class WorkerCrashed(UpstreamError):
    code = "worker_crashed"


class WorkerTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "worker_timeout"
