"""A node's end of a federated analysis: it answers the coordinator's rounds for itself.

At setup the node judges the researcher itself (the coordinator forwards their token): for every
dataset the job names (or every dataset of the node), the access policy decides and audits
`analysis`; datasets without a valid ControlledAccessGrants visa are left out, and with none
left the node contributes nothing and says why. It then selects its individuals and applies its
disclosure rules before anything leaves (:mod:`genofed.analysis.disclosure`). Every later round
is judged again from what setup stored (a visa revoked or expired since stops the node's part)
and audited with the job, round and step.

What leaves is masked (:mod:`genofed.analysis.secure`): the coordinator can read only the sum
over all participants. Public on purpose: the node's cohort size, its population labels, and the
tokens of the variants it holds (not the variants: :mod:`genofed.analysis.harmonise`).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from genofed.access.exposure import ExposureLedger
from genofed.access.http import Authenticator
from genofed.access.policy import AccessPolicy, Action
from genofed.access.principal import Grant, Principal
from genofed.analysis import disclosure, fixed_point, harmonise, secure, steps
from genofed.analysis.exposure import spend_for_release
from genofed.analysis.protocol import RoundKind, RoundReply, RoundRequest, sign_reply
from genofed.analysis.spec import JobSpec
from genofed.analysis.state import JobStateError, NodeAnalysisState
from genofed.config.live import LiveConfig
from genofed.config.node import NodePaths
from genofed.errors import (
    AggregationError,
    AuthenticationError,
    GenofedError,
    UnknownDatasetError,
)
from genofed.federation.network import LiveNetwork, Network, network_path_of
from genofed.store.dataset import Dataset
from genofed.store.node import NodeStore

log = logging.getLogger(__name__)


class Refused(GenofedError):
    """This node does not take part (the reason goes back to the coordinator)."""


@dataclass
class _Keys:
    agreement: x25519.X25519PrivateKey
    signing: ec.EllipticCurvePrivateKey


def _load_keys(paths: NodePaths) -> _Keys:
    agreement = serialization.load_pem_private_key(paths.agreement_key.read_bytes(), None)
    signing = serialization.load_pem_private_key(paths.signing_key.read_bytes(), None)
    if not isinstance(agreement, x25519.X25519PrivateKey) or \
            not isinstance(signing, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths.keys}: the node's agreement or signing key is of the wrong "
                         "type")
    return _Keys(agreement, signing)


class AnalysisNode:
    """Answers round requests; safe to share between threads and server processes (its state
    is on disk)."""

    def __init__(self, store: NodeStore, live: LiveConfig, policy: AccessPolicy,
                 authenticator: Authenticator, exposure: ExposureLedger | None = None) -> None:
        """`exposure`: the node's ledger, charged for what released results reveal about each
        individual (:mod:`genofed.analysis.exposure`)."""
        self.store = store
        self.exposure = exposure
        self.live = live
        self.policy = policy
        self.authenticator = authenticator
        self.paths = NodePaths(store.root, live.started)
        self.state = NodeAnalysisState(self.paths.analysis)
        self.node_id = live.started.node_id
        self._keys: _Keys | None = None

    @property
    def keys(self) -> _Keys:
        if self._keys is None:
            self._keys = _load_keys(self.paths)
        return self._keys

    def network(self) -> Network:
        network_file = self.live.current().federation.network_file
        if not network_file:
            raise Refused("this node is in no network")
        return LiveNetwork(network_path_of(self.store.root, network_file)).current()

    # -- dispatch --------------------------------------------------------------------------------
    def answer(self, peer: str, request: RoundRequest, authorization: str | None) -> bytes:
        """The node's signed answer to a round (:func:`~genofed.analysis.protocol.sign_reply`)."""
        return sign_reply(self.handle(peer, request, authorization), request, self.keys.signing)

    def handle(self, peer: str, request: RoundRequest, authorization: str | None) -> RoundReply:
        if self.node_id not in request.participants:
            return self._refusal(f"this node ({self.node_id}) is not among the job's "
                                 "participants")
        try:
            if request.kind is RoundKind.SETUP:
                return self._setup(peer, request, authorization)
            with self.state.locked(request.job):
                state = self.state.load(request.job)
                if state["coordinator"] != peer:
                    raise Refused(f"job {request.job} is coordinated by "
                                  f"{state['coordinator']}, not {peer}")
                if request.kind is RoundKind.FINISH:
                    self.state.finish(request.job)
                    return RoundReply(self.node_id, "ok")
                self._check_round(request, state)
            datasets = self._still_allowed(request, state)
            if request.kind is RoundKind.VARIANTS:
                return self._variants(request, state, datasets)
            if request.kind is RoundKind.STATISTICS:
                return self._statistics(request, state, datasets)
            return self._reveal(request, state, datasets)
        except (Refused, JobStateError, disclosure.DisclosureRefusal, AggregationError) as exc:
            return self._refusal(str(exc))

    def _check_round(self, request: RoundRequest, state: dict[str, Any]) -> None:
        """The rules that keep a coordinator from learning more than the sums it is owed,
        checked (and the round recorded) before anything is computed:

        * a round is answered for one request only: asked again with other arrays under the
          same context, the node would mask other statistics with the same masks, and the
          difference of the two answers would be the difference of the statistics;
        * participants only ever leave, never join, and attempts only go up;
        * a new attempt without a node that took part in *pooled* statistics of the previous
          attempt (a later step or a reveal was asked, so a sum including it exists) is
          refused: the same steps summed without it would give its statistics by difference.
          A node that drops out during an attempt's first step leaves no such sum, and the
          job carries on without it.
        """
        if not set(request.participants) <= set(state["participants"]):
            raise Refused("the round names participants that did not take part in setup")
        rounds: dict[str, Any] = state.setdefault("rounds", {
            "attempt": request.attempt, "participants": request.participants, "pooled": False,
            "answered": {}})
        if request.attempt < rounds["attempt"]:
            raise Refused(f"attempt {request.attempt} is over (this job is at attempt "
                          f"{rounds['attempt']})")
        if request.attempt > rounds["attempt"]:
            left = sorted(set(rounds["participants"]) - set(request.participants))
            if rounds["pooled"] and left:
                raise Refused(
                    f"the job restarts without {', '.join(left)} after statistics including "
                    f"{'it' if len(left) == 1 else 'them'} were pooled; the same steps summed "
                    "without them would reveal their statistics by difference, so this node "
                    "stops here (submit the job again)")
            rounds.update(attempt=request.attempt, participants=request.participants,
                          pooled=False, answered={})
        elif request.participants != rounds["participants"]:
            raise Refused("the participants changed within an attempt")
        if request.kind is RoundKind.REVEAL or (request.kind is RoundKind.STATISTICS
                                                and request.number > 1):
            rounds["pooled"] = True
        context = request.context.encoded().decode()
        digest = request.digest()
        if rounds["answered"].setdefault(context, digest) != digest:
            raise Refused("this round was already answered for another request; a node "
                          "answers each round once")
        self.state.save(request.job, state)

    def _refusal(self, message: str) -> RoundReply:
        return RoundReply(self.node_id, "refused", message)

    # -- setup -----------------------------------------------------------------------------------
    def _setup(self, peer: str, request: RoundRequest, authorization: str | None) -> RoundReply:
        if self.state.used(request.job):
            raise Refused(f"job {request.job} was set up here before; a job id is used once")
        try:
            spec = JobSpec.model_validate_json(request.spec)
        except ValueError as exc:
            raise Refused(f"the job spec is not valid here: {exc}") from None
        try:
            principal = self.authenticator.authenticate(authorization)
        except AuthenticationError as exc:
            self.policy.deny_unauthenticated(None, Action.ANALYSIS, exc.reason)
            raise Refused(f"the researcher's token is refused: {exc.reason}") from None
        if principal is None:
            self.policy.deny_unauthenticated(None, Action.ANALYSIS, "no token forwarded")
            raise Refused("the coordinator forwarded no researcher token")
        detail = f"job={request.job} round=setup type={spec.type.value}"
        allowed: list[Dataset] = []
        reasons: list[str] = []
        for dataset in self._named_datasets(spec):
            if dataset.metadata.assembly_id != spec.assembly:
                reasons.append(f"{dataset.id}: its assembly is {dataset.metadata.assembly_id}, "
                               f"the job's {spec.assembly} (variants would not match)")
                continue
            decision = self.policy.decide(principal, dataset.metadata, Action.ANALYSIS,
                                          detail=detail)
            if decision.allowed:
                allowed.append(dataset)
            else:
                reasons.append(f"{dataset.id}: {decision.reason}")
        if not allowed:
            raise Refused("no dataset here may be analysed by this researcher: "
                          + ("; ".join(reasons) or "the node holds none of the datasets named"))
        settings = self.live.current()
        selections = disclosure.select_cohorts(
            spec, allowed, self.state, request.job, settings.analysis.min_individuals,
            settings.disclosure.count_floor)
        grants = [g for g in principal.grants if g.dataset_id in {d.id for d in allowed}]
        state = {"job": request.job, "coordinator": peer, "spec": request.spec,
                 "researcher": principal.pseudonym, "issuer": principal.issuer,
                 "subject": principal.subject, "expires": principal.expires,
                 "grants": [[g.dataset_id, g.issuer, g.by, g.expires, g.visa_id]
                            for g in grants],
                 "datasets": [{"id": s.dataset.id, "version": s.dataset.version,
                               "n": len(s.columns)} for s in selections],
                 "participants": request.participants, "created": int(time.time())}
        self.state.save(request.job, state)
        for selection in selections:
            self.state.save_arrays(request.job, selection.dataset.id, columns=selection.columns)
            self.state.record_selection(selection.dataset.id, request.job, selection.hashed)
        public: dict[str, Any] = {
            "individuals": sum(len(s.columns) for s in selections),
            "datasets": [s.dataset.id for s in selections],
            "populations": sorted({p for s in selections for p in s.populations if p}),
            # the node's release rules, so the coordinator applies the strictest
            "minMac": settings.analysis.min_mac,
            "minIndividuals": settings.analysis.min_individuals,
            "countFloor": settings.disclosure.count_floor}
        return RoundReply(self.node_id, "ok", public=public)

    def _named_datasets(self, spec: JobSpec) -> list[Dataset]:
        if spec.datasets is None:
            return self.store.datasets()
        found = []
        for dataset_id in spec.datasets:
            try:
                found.append(self.store.dataset(dataset_id))
            except UnknownDatasetError:
                continue  # another node's dataset
        return found

    def _agreement_keys(self, participants: list[str]) -> dict[str, x25519.X25519PublicKey]:
        network = self.network()
        keys = {}
        for other in participants:
            member = network.member(other)
            if member is None:
                raise Refused(f"participant {other!r} is not a member of network "
                              f"{network.name!r}")
            keys[other] = member.agreement_key
        return keys

    def _seal_job_key(self, request: RoundRequest) -> dict[str, str]:
        """The leader draws the job key and seals it for every other participant."""
        key = harmonise.new_job_key()
        self.state.save_key(request.job, key)
        sealed = harmonise.seal_job_key(key, job_id=request.job, leader_id=self.node_id,
                                        private_key=self.keys.agreement,
                                        public_keys=self._agreement_keys(request.participants))
        return {node: base64.b64encode(box).decode() for node, box in sealed.items()}

    # -- later rounds ----------------------------------------------------------------------------
    def _principal(self, state: dict[str, Any]) -> Principal:
        """The researcher as setup saw them (token verified then; visas re-checked now)."""
        return Principal(issuer=state["issuer"], subject=state["subject"],
                         expires=int(state["expires"]),
                         grants=tuple(Grant(*g) for g in state["grants"]))

    def _still_allowed(self, request: RoundRequest, state: dict[str, Any]) -> list[Dataset]:
        """The job's datasets, each judged again (revoked or expired visas stop the node)."""
        principal = self._principal(state)
        datasets = []
        for entry in state["datasets"]:
            dataset = self.store.dataset_version(entry["id"], entry["version"])
            if dataset is None:
                raise Refused(f"dataset {entry['id']} {entry['version']} is no longer kept "
                              "here; the job must start again")
            detail = (f"job={request.job} round={request.kind.value} step={request.step} "
                      f"number={request.number} attempt={request.attempt}")
            decision = self._decide(principal, dataset, detail)
            if not decision:
                raise Refused(f"{dataset.id}: access for this job has ended")
            datasets.append(dataset)
        return datasets

    def _decide(self, principal: Principal, dataset: Dataset, detail: str) -> bool:
        return self.policy.decide(principal, dataset.metadata, Action.ANALYSIS,
                                  detail=detail).allowed

    def _variants(self, request: RoundRequest, state: dict[str, Any],
                  datasets: list[Dataset]) -> RoundReply:
        public: dict[str, Any] = {}
        sealed = request.extra.get("sealedKey")
        leader = harmonise.leader(request.participants)
        if request.extra.get("lead"):
            if leader != self.node_id:
                raise Refused("only the first participant leads a job")
            public["sealedKeys"] = self._seal_job_key(request)
        elif sealed:
            public_key = self._agreement_keys([leader])[leader]
            try:
                box = base64.b64decode(str(sealed), validate=True)
            except ValueError:
                raise Refused("the sealed job key is not base64") from None
            key = harmonise.open_job_key(box, job_id=request.job, node_id=self.node_id,
                                         leader_id=leader, private_key=self.keys.agreement,
                                         leader_public_key=public_key)
            self.state.save_key(request.job, key)
        key = self.state.key(request.job)
        spec = JobSpec.model_validate_json(state["spec"])
        tokens = steps.variant_tokens(self.state, request.job, key, spec, datasets)
        return RoundReply(self.node_id, "ok", public=public, arrays={"tokens": tokens})

    def _statistics(self, request: RoundRequest, state: dict[str, Any],
                    datasets: list[Dataset]) -> RoundReply:
        spec = JobSpec.model_validate_json(state["spec"])
        if "union" in request.arrays:
            steps.remember_variant_order(self.state, request.job, datasets,
                                         request.arrays["union"])
        statistics, bits = steps.node_statistics(self.state, request, spec, datasets,
                                                 self.live.current())
        layout = fixed_point.Layout.of(statistics, bits=bits,
                                  max_participants=len(request.participants))
        masked = secure.mask(fixed_point.encode(statistics, layout), node_id=self.node_id,
                             participants=request.participants,
                             private_key=self.keys.agreement,
                             public_keys=self._agreement_keys(request.participants),
                             context=request.context)
        return RoundReply(self.node_id, "ok", arrays={"masked": masked},
                          layout=layout.to_json())

    def _reveal(self, request: RoundRequest, state: dict[str, Any],
                datasets: list[Dataset]) -> RoundReply:
        spec = JobSpec.model_validate_json(state["spec"])
        settings = self.live.current()
        threshold = max(spec.min_mac, settings.analysis.min_mac)
        tokens = request.arrays.get("tokens", np.empty(0, dtype=harmonise.TOKEN_DTYPE))
        mac = request.arrays.get("mac", np.zeros(len(tokens)))
        if len(mac) != len(tokens) or (len(mac) and float(np.min(mac)) < threshold):
            raise Refused(f"variants are released only with a pooled minor allele count of at "
                          f"least {threshold}")
        keys = steps.reveal(self.state, request.job, datasets, tokens)
        if self.exposure is not None:
            with steps.compute_on(settings):
                spend_for_release(self.exposure, self.state, request.job, spec, datasets,
                                  tokens, mac)
        return RoundReply(self.node_id, "ok", arrays=keys)

