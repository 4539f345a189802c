"""What each part of the server needs from the engine, as small ``typing.Protocol`` ports.

The engine (``server/engine.py``) is the one place that composes the server: it builds the
persister, the sessions, the failover coordination, the transport and the HTTP routes, and it
is the object handed to each of them. Each part sees only the port it declares here, never the
``Engine`` class, so that the imports run one way (``docs/architecture.md``):

```
server.engine                        composes everything below (the only module that may)
├── server.connection, web           the fronts: a WebSocket, an HTTP route
├── server.failover, .generation     reach sessions elsewhere, add a round
├── server.ports                     this module: the ports the parts above ask for
└── server.session                   one live session, above the game and the stores
```

The model is hypercorn's ``typing.py``: the protocol layer declares the few things it calls,
and the driver that owns the event loop provides them. Rules this module keeps:

1. **A port is what its caller uses, nothing more.** A member is here because the caller
   reads or calls it; a new need is a new member here, visible in review.
2. **Ports read the engine as it is now.** They are implemented by the ``Engine`` itself, so a
   collaborator replaced on it (a test that drops ``coord`` to play dead) is the one every part
   sees from then on: nothing is copied at composition time.
3. **Types only.** No code runs here; importing this module imports nothing the parts below
   do not import already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pubquiz_engine.game import GameSession
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.protocol.limits import Limits
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.metrics import Metrics
from pubquiz_engine.server.ratelimit import AddressLimiter
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.server.timeouts import TimeoutQueue
from pubquiz_engine.store import Results, Store

__all__ = ["ConnectionHost", "ResultsSource", "SessionHost"]


class ConnectionHost(Protocol):
    """What a ``Connection`` needs from the engine: admit its address, find or create a
    session, generate a round, and the shared limits and counters it charges."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def frame_limits(self) -> Limits:
        """The codec's limits for client frames, shared by every connection."""
        ...

    @property
    def join_limiter(self) -> AddressLimiter:
        """Join (and failed resume) attempts per address."""
        ...

    @property
    def operator_limiter(self) -> AddressLimiter:
        """Wrong operator keys per address."""
        ...

    @property
    def stopping(self) -> bool:
        """A graceful stop has begun: new connections are closed with 1012."""
        ...

    def admit(self, address: str) -> bool:
        """Count a connection from ``address`` in; False when the address is over its cap."""
        ...

    def release(self, address: str) -> None:
        """The connection counted in by ``admit`` ended."""
        ...

    @property
    def asks_directory(self) -> bool:
        """A session not here (``local_session``) is looked up in the session directory:
        ``find_session`` may wait."""
        ...

    @property
    def join_timeouts(self) -> TimeoutQueue[Any]:
        """The connections' join deadlines (``Connection`` rule 3; its items are the
        connections, which this module may not import)."""
        ...

    def local_session(self, code: str) -> LiveSession | None:
        """The session ``code`` on this node (live, or ended and not moved); None if it is not
        here. Never waits."""
        ...

    async def find_session(self, code: str) -> LiveSession | None:
        """The live session ``code``: here, or taken over from a dead node. Raises ``Moved``
        when another node serves it, ``Rejected`` (retryable) while it moves."""
        ...

    async def create_session_from_request(self, *, quiz_path: str | None,
                                          quiz_data: Mapping[str, Any] | None, mode: str,
                                          options: Mapping[str, Any] | None
                                          ) -> tuple[LiveSession, str]:
        """An operator's ``create_session``: the new session and its host token."""
        ...

    async def generate_round(self, session: LiveSession, msg: m.Generate) -> m.Generated:
        """An operator's ``generate``: a model-written round added to ``session``."""
        ...


class ResultsSource(Protocol):
    """What the web routes' ``/results`` needs: the session (here, or through the failover
    coordination) whose host token it checks, and the results reader."""

    @property
    def sessions(self) -> Mapping[str, LiveSession]:
        """The sessions live on this node, by code."""
        ...

    @property
    def asks_directory(self) -> bool:
        """As ``ConnectionHost.asks_directory``: a miss here is asked of ``find_session``."""
        ...

    async def find_session(self, code: str) -> LiveSession | None:
        """As ``ConnectionHost.find_session``."""
        ...

    async def drain_writes(self, *, timeout: float) -> bool:
        """Wait (at most ``timeout``) until every queued record is committed."""
        ...

    async def session_results(self, code: str) -> Results:
        """A session's answers and standings from the store (``KeyError`` if unknown)."""
        ...


class SessionHost(Protocol):
    """What the failover coordination (``server/failover.py``) needs: the sessions of this
    node, the store it replays from, and a way to serve a session it restored."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def store(self) -> Store: ...

    @property
    def sessions(self) -> Mapping[str, LiveSession]: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def clock(self) -> Callable[[], float]:
        """Wall-clock seconds (the sessions' clock)."""
        ...

    def adopt_session(self, *, code: str, game: GameSession, host_token_hash: str, epoch: int,
                      seq: int, created_at: float, resume_hashes: dict[int, str]
                      ) -> LiveSession:
        """Serve a session restored by a takeover."""
        ...
