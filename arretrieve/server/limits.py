"""What one client may ask of `arr serve`: declared here once, read by the app and the CLI's flags
(without importing FastAPI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArrError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Where `arr serve` reads its bearer token when --token is not given (a flag shows in `ps`).
TOKEN_VARIABLE = "ARR_SERVE_TOKEN"


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server (each is an `arr serve` flag)."""

    max_batch: int = field(default=64, metadata={"help": "Most queries in one POST /search."})
    max_query_chars: int = field(default=2000, metadata={"help": "Longest query, in characters."})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "Largest request body, in bytes."})
    max_queued: int = field(default=128, metadata={
        "help": "Most queries waiting for the model at once; beyond that, 503 with Retry-After."})
    allowed_hosts: tuple[str, ...] = field(default=(), metadata={
        "help": "Host names the server answers to, besides the loopback ones (default: any name when it "
                "listens beyond loopback, none when it listens on loopback)."})

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_query_chars", "max_body_bytes", "max_queued"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ArrError(f"{name} must be a positive whole number, not {getattr(self, name)!r}")
        if self.max_batch > self.max_queued:
            raise ArrError(f"max_batch ({self.max_batch}) must not exceed max_queued ({self.max_queued}): "
                           "such a batch could never be queued")
