"""``LedgerClient``: talk to ledger nodes and trust none of them.

Every answer the client returns is checked: state values come with a sparse-Merkle proof against a
block header, and the header with a commit certificate from a quorum of the validator set the client
trusts at its height (the genesis validators, from the network's ``genesis.json``, and the sets they
handed over to). A node that lies about a
value, a path, a header or a signature is caught (:class:`~did_registry.errors.InvalidProof`) and
the client moves on to the next node it knows. Submissions go to any node; the client waits for
commitment by polling transaction status.

Reads never go back: the client remembers the highest certified block it has seen, and an answer
as of an older block (a node lagging, restarting or replaying, or one answering with the genesis
state) is passed over for another node's, waiting up to ``behind_wait`` for one to catch up. A node
is trusted for nothing unproven: a transaction reported committed is checked for inclusion in a
certified block before :meth:`LedgerClient.submit_and_wait` says so.

Validator-set changes are followed through the chain (:mod:`did_registry.validator_trust`): a
header naming a set the client does not trust at its height makes it ask the nodes for the changes
since the newest it knows (``GET /validators/changes``), each proven against a header certified by
the set before it. A set no node proves is refused with :class:`UntrustedValidatorSet` (after a
round of questions that learned nothing, none is asked for :data:`RELEARN_INTERVAL`);
:meth:`LedgerClient.trust_validators` adds a set
learned out of band, trusted at every height.

The client is put together from one module per part, each building on the one before:
:mod:`did_registry.node_answers` (asking the nodes in turn), :mod:`did_registry.certified_headers`
(certificates and validator set changes), :mod:`did_registry.proven_reads`,
:mod:`did_registry.did_resolution`, :mod:`did_registry.txn_submission` and
:mod:`did_registry.header_stream` (:meth:`LedgerClient.follow`). Their public names are importable
from here too.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from did_registry.bounded_http import BoundedTransport
from did_registry.certified_headers import RELEARN_INTERVAL, UntrustedValidatorSet
from did_registry.did_resolution import DidResolution
from did_registry.header_stream import MAX_EVENT_BYTES, HeaderStream
from did_registry.identity.resolution import ResolutionOptions, ResolutionResult
from did_registry.ledger.genesis import Genesis
from did_registry.node_answers import ANSWER_ERRORS, FAILURES_KEPT, LedgerUnavailable
from did_registry.txn_submission import RefusedByEveryNode, TxnSubmission
from did_registry.validator_trust import ValidatorTrust, genesis_root

__all__ = [
    "ANSWER_ERRORS",
    "FAILURES_KEPT",
    "MAX_EVENT_BYTES",
    "RELEARN_INTERVAL",
    "LedgerClient",
    "LedgerUnavailable",
    "RefusedByEveryNode",
    "TrellisResolver",
    "UntrustedValidatorSet",
]


class LedgerClient(DidResolution, TxnSubmission, HeaderStream):
    """A client for one Trellis network, given its genesis (the trust anchor) and node URLs."""

    def __init__(
        self,
        nodes: Sequence[str] | str,
        genesis: Genesis | Mapping[str, Any],
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        behind_wait: float = 2.0,
        trust: ValidatorTrust | None = None,
    ) -> None:
        """``behind_wait``: how long a read that needs a height (``min_height``) waits for a node that
        answers, but is behind it, to reach it; nodes commit a block moments apart, and one that has
        it may just have gone down. (The round of requests under way when it runs out is finished:
        each node may still take up to ``timeout``.) ``trust``: the validator sets to trust, shared
        with other clients of the network (what one learns, all trust); a new one from the genesis
        by default."""
        self.genesis = genesis if isinstance(genesis, Genesis) else Genesis.from_json(genesis)
        self.nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        if not self.nodes:
            raise ValueError("a LedgerClient needs at least one node URL")
        if (
            isinstance(behind_wait, bool)
            or not isinstance(behind_wait, (int, float))
            or not 0 <= behind_wait < math.inf
        ):
            raise ValueError(f"behind_wait must be a finite number of seconds, not {behind_wait!r}")
        # Each exchange with a node ends within ``timeout`` and holds at most MAX_ANSWER_BYTES (one
        # node must not hold a reader or fill its memory); proxies from the environment would bypass
        # these bounds, so nodes are reached directly.
        self._http = httpx.Client(timeout=timeout, transport=BoundedTransport(transport), trust_env=False)
        self._genesis_root = genesis_root(self.genesis)
        if trust is not None and (trust.network, trust.genesis_root) != (
            self.genesis.network,
            self._genesis_root,
        ):
            raise ValueError(
                f"a trust in network {trust.network!r} from another genesis than this client's "
                f"({self.genesis.network!r}): a name is not a chain"
            )
        self._trust = ValidatorTrust(self.genesis, self._genesis_root) if trust is None else trust
        self._certified: OrderedDict[bytes, None] = OrderedDict()  # headers whose certificate checked out
        self._seen = 0  # the highest certified height any answer showed: reads never go back before it
        # what went wrong with which node, newest last
        self.failures: deque[str] = deque(maxlen=FAILURES_KEPT)
        self.behind_wait = behind_wait

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> LedgerClient:
        """Use the client in a ``with`` block; it closes its connections at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the HTTP connections."""
        self.close()


class TrellisResolver:
    """A :class:`~did_registry.identity.resolution.Resolver` for ``did:trellis`` through a client."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Resolve with every proof checked; ``versionId`` is honoured."""
        version = (options or {}).get("versionId")
        try:
            return self.client.resolve(did, version_id=None if version is None else str(version))
        except LedgerUnavailable as exc:
            return ResolutionResult.failure("internalError", str(exc))
