"""The coordinator's end of a federated analysis: it runs a job's rounds against the network's
members, sums their masked contributions, and drives the job type's solver (:mod:`.plans`).

A job:

1. *setup* goes to every member with the researcher's token; each node decides for itself and
   either takes part or says why not (no grant, too few individuals, ...). At least two must
   take part: one node's statistics cannot be hidden in a sum of one.
2. *variants*: the leader (first participant) draws the job key and seals it for the others;
   each node returns tokens of the variants it holds; their union, in token order, is the job's
   variant order (the coordinator never learns which variants, only how many each node lacks).
3. *statistics* rounds, as the plan asks: every participant's masked contribution is verified
   (ES256 over the round's context) and the sum decoded. A node that fails, times out, refuses
   or sends a contribution that does not verify is dropped; with two or more left the analysis
   starts again from its first statistics round without it (a new attempt: fresh masks), and the
   result names the nodes included. Never a sum with a part missing.
4. *reveal*: nodes map the tokens of the variants the pooled result releases (minor allele count
   at or above the threshold) back to (contig, pos, ref, alt), and say so only when the pooled
   count shown to them reaches their own threshold too.
5. the plan writes the result files; *finish* lets nodes drop the job's state.

After every round the plan is saved (:mod:`.jobs`), so a restarted coordinator resumes a job from
its last completed round; nodes keep their side on disk. The researcher's token is needed at
setup only and is never stored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genofed.analysis import fixed_point, harmonise, secure
from genofed.analysis.jobs import Job, JobState, JobStore
from genofed.analysis.plans import Plan, VariantTable, make_plan
from genofed.analysis.protocol import (
    ENDPOINT,
    MAX_MESSAGE,
    MEDIA_TYPE,
    ProtocolError,
    RoundKind,
    RoundReply,
    RoundRequest,
    open_reply,
)
from genofed.errors import AggregationError, FederationError, TransportError
from genofed.federation.client import FanOut, Outgoing
from genofed.federation.network import LiveNetwork, Member, Network

log = logging.getLogger(__name__)

#: Seconds a node has to answer one round (statistics over a whole genome take a while).
ROUND_TIMEOUT = 900.0


class JobFailed(FederationError):
    """The job cannot finish correctly (its message says why)."""


@dataclass
class _Answer:
    member: Member
    reply: RoundReply | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.ok and self.problem is None


@dataclass
class _Run:
    """A job in progress (what is persisted is the plan and the job row)."""

    job: Job
    network: Network
    participants: list[str]
    attempt: int = 0
    union: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="S16"))
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Per node: bytes it sent (its answers) and received (the coordinator's requests), and
    #: the rounds it answered.
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)


class Coordinator:
    """Runs jobs in the hub's event loop."""

    def __init__(self, store: JobStore, fan_out: FanOut, network: LiveNetwork, *,
                 round_timeout: float = ROUND_TIMEOUT) -> None:
        self.store = store
        self.fan_out = fan_out
        self.network = network
        self.round_timeout = round_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- starting ------------------------------------------------------------------------------
    def start(self, job: Job, authorization: str) -> None:
        """Run a new job in the background (its token is used for setup, then dropped)."""
        self._tasks[job.id] = asyncio.create_task(self._guarded(job, authorization))

    def resume_all(self) -> None:
        """After a restart: jobs past setup carry on; jobs that had not finished setup fail
        (their researcher's token is not kept) and say to submit again."""
        for job in self.store.unfinished():
            if self.store.load_plan(job.id) is None:
                self.store.update(job.id, state=JobState.FAILED,
                                  message="the coordinator restarted before every node had "
                                          "accepted the job; submit it again")
                continue
            self._tasks[job.id] = asyncio.create_task(self._guarded(job, None))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _guarded(self, job: Job, authorization: str | None) -> None:
        try:
            await self._run(job, authorization)
        except asyncio.CancelledError:
            raise
        except JobFailed as exc:
            self.store.update(job.id, state=JobState.FAILED, message=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self.store.update(job.id, state=JobState.FAILED,
                              message=f"the coordinator failed ({type(exc).__name__}); its "
                                      "operator's log has the details")

    # -- a job --------------------------------------------------------------------------------
    async def _run(self, job: Job, authorization: str | None) -> None:
        saved: dict[str, Any] | None = self.store.load_plan(job.id)
        self.store.update(job.id, state=JobState.RUNNING)
        if saved is None:
            assert authorization is not None
            run = await self._setup(job, authorization)
            await self._variants(run)
            plan = make_plan(job.spec, len(run.union), run.nodes)
            self._save(run, plan)
        else:
            run = saved["run"]
            run.network = self.network.current()
            plan = saved["plan"]
        while True:
            wanted = plan.wants_positions()
            if wanted is not None:  # e.g. PCA thins its variants by distance
                plan.positions = await self._reveal(run, *wanted, step="positions",
                                                     number=plan.number)
                self._save(run, plan)
                continue
            step = plan.next_step()
            if step is None:
                break
            summed = await self._statistics(run, plan, step)
            if summed is None:  # a node dropped out: start the analysis again without it
                plan = make_plan(job.spec, len(run.union), run.nodes)
            else:
                plan.absorb(summed)
            self._save(run, plan)
        variants = await self._reveal(run, *plan.to_reveal(), step="release",
                                      number=plan.number + 1)
        directory = self.store.job_dir(job.id) / "results"
        directory.mkdir(exist_ok=True)
        files = plan.write(directory, variants, self._meta(run))
        await self._broadcast(run, RoundKind.FINISH)
        progress = self._progress(run, "done", plan)
        progress["released"] = len(variants.indices)
        self.store.update(job.id, state=JobState.DONE, files=files,
                          message=f"done over {', '.join(run.participants)}", progress=progress)

    def _save(self, run: _Run, plan: Plan) -> None:
        self.store.save_plan(run.job.id, {"run": _persistable(run), "plan": plan})
        self.store.update(run.job.id, participants=run.participants,
                          progress=self._progress(run, plan.describe(), plan))

    @staticmethod
    def _progress(run: _Run, stage: str, plan: Plan | None = None) -> dict[str, Any]:
        """What the researcher sees while the job runs: the stage, statistics steps done of
        (about) how many, and every node's part."""
        progress: dict[str, Any] = {"stage": stage, "attempt": run.attempt,
                                    "variants": len(run.union), "nodes": run.nodes,
                                    "traffic": run.traffic}
        if plan is not None:
            progress.update(step=plan.number, steps=max(plan.number, plan.expected_steps()))
        return progress

    def _meta(self, run: _Run) -> dict[str, Any]:
        return {"job": run.job.id, "network": run.network.name,
                "nodes": {n: run.nodes[n] for n in run.participants},
                "participants": run.participants}

    # -- rounds ---------------------------------------------------------------------------------
    async def _ask(self, member: Member, request: RoundRequest, run: _Run,
                   authorization: str | None = None) -> _Answer:
        headers = {"content-type": MEDIA_TYPE, "accept": MEDIA_TYPE}
        if authorization is not None:
            headers["authorization"] = authorization
        outgoing = Outgoing("POST", ENDPOINT, body=request.to_bytes(), headers=headers)
        try:
            reply = await self.fan_out.send(member, outgoing, self.round_timeout,
                                            max_answer=MAX_MESSAGE)
        except TimeoutError:
            return _Answer(member, None, f"no answer within {self.round_timeout:g} s")
        except TransportError as exc:
            return _Answer(member, None, f"{exc.kind}: {exc.detail}")
        # What each node sent and received, for the researcher (and the benchmark) to see.
        traffic = run.traffic.setdefault(member.id, {"bytesSent": 0, "bytesReceived": 0,
                                                      "rounds": 0})
        traffic["bytesSent"] += len(reply.body)
        traffic["bytesReceived"] += len(outgoing.body or b"")
        traffic["rounds"] += 1
        if reply.status != 200:
            return _Answer(member, None, f"HTTP {reply.status}: {reply.body[:200]!r}")
        try:
            answer = open_reply(reply.body, request, member.id, member.signing_key)
        except ProtocolError as exc:
            return _Answer(member, None, str(exc))
        return _Answer(member, answer, None if answer.ok else answer.message)

    def _members(self, run: _Run) -> list[Member]:
        found = []
        for node_id in run.participants:
            member = run.network.member(node_id)
            if member is None:
                raise JobFailed(f"participant {node_id} left the network during the job")
            found.append(member)
        return found

    async def _setup(self, job: Job, authorization: str) -> _Run:
        network = self.network.current()
        everyone = sorted(network.members, key=lambda m: m.id)
        run = _Run(job, network, [m.id for m in everyone])
        request = RoundRequest(job.id, RoundKind.SETUP, run.participants, 0,
                               spec=job.spec.to_json())
        answers = await asyncio.gather(*(self._ask(m, request, run, authorization)
                                         for m in everyone))
        for answer in answers:
            run.nodes[answer.member.id] = {"country": answer.member.country,
                                           "status": "ok" if answer.ok else "not taking part",
                                           "message": answer.problem or ""}
            if answer.ok and answer.reply is not None:
                run.nodes[answer.member.id].update(answer.reply.public)
        run.participants = [a.member.id for a in answers if a.ok]
        self.store.update(job.id, participants=run.participants,
                          progress=self._progress(run, "setup"))
        if len(run.participants) < 2:
            reasons = "; ".join(f"{a.member.id}: {a.problem}" for a in answers if not a.ok)
            raise JobFailed(f"{len(run.participants)} node(s) can take part, and a job needs at "
                            f"least two (one node's statistics cannot be hidden in a sum): "
                            f"{reasons or 'no member accepted'}")
        return run

    async def _variants(self, run: _Run) -> None:
        members = self._members(run)
        leader, others = members[0], members[1:]
        lead = RoundRequest(run.job.id, RoundKind.VARIANTS, run.participants, run.attempt,
                            extra={"lead": True})
        first = await self._ask(leader, lead, run)
        if not first.ok or first.reply is None:
            raise JobFailed(f"{leader.id} (the job's leader) could not draw the job key: "
                            f"{first.problem}")
        sealed: dict[str, str] = first.reply.public.get("sealedKeys", {})
        answers = [first, *await asyncio.gather(*(self._ask(m, RoundRequest(
            run.job.id, RoundKind.VARIANTS, run.participants, run.attempt,
            extra={"sealedKey": sealed.get(m.id, "")}), run) for m in others))]
        failed = [a for a in answers if not a.ok]
        if failed:
            raise JobFailed("nodes failed to match variants: " + "; ".join(
                f"{a.member.id}: {a.problem}" for a in failed))
        tokens = {a.member.id: a.reply.arrays["tokens"] for a in answers if a.reply is not None}
        run.union = harmonise.union(list(tokens.values()))
        for node_id, held in tokens.items():
            run.nodes[node_id]["variantsLacked"] = int(len(run.union) - len(held))

    async def _statistics(self, run: _Run, plan: Plan,
                          step: Any) -> dict[str, np.ndarray] | None:
        members = self._members(run)
        request = RoundRequest(run.job.id, RoundKind.STATISTICS, run.participants, run.attempt,
                               step=step.name, number=step.number, arrays=dict(step.arrays),
                               extra=dict(step.extra))
        if step.first:
            request.arrays["union"] = run.union
        answers = await asyncio.gather(*(self._ask(m, request, run) for m in members))
        bad: list[str] = []
        layouts = []
        vectors = []
        for answer in answers:
            problem = answer.problem
            if answer.ok and answer.reply is not None:
                problem = self._check(answer, len(run.participants))
            if problem is not None:
                bad.append(answer.member.id)
                run.nodes[answer.member.id].update(status="excluded", message=problem)
                continue
            assert answer.reply is not None
            layouts.append(answer.reply.layout)
            vectors.append(answer.reply.arrays["masked"])
            node = run.nodes[answer.member.id]
            node["rounds"] = int(node.get("rounds", 0)) + 1
        if not bad and any(layout != layouts[0] for layout in layouts):
            raise JobFailed("the nodes' contributions differ in layout: they do not run the "
                            "same genofed analysis")
        if bad:
            run.participants = [p for p in run.participants if p not in bad]
            run.attempt += 1
            if len(run.participants) < 2:
                reasons = "; ".join(f"{node}: {run.nodes[node]['message']}" for node in bad)
                raise JobFailed(f"too few nodes are left to go on (a job needs at least two): "
                                f"{reasons}")
            log.warning("job %s: %s dropped out; starting again over %s", run.job.id,
                        ", ".join(bad), ", ".join(run.participants))
            return None
        layout = fixed_point.Layout.from_json(layouts[0])
        return fixed_point.decode(secure.aggregate(vectors), layout)

    @staticmethod
    def _check(answer: _Answer, participants: int) -> str | None:
        """Why a (signed) contribution cannot be used (None: it can)."""
        assert answer.reply is not None
        masked = answer.reply.arrays.get("masked")
        if masked is None or masked.dtype != np.uint64 or masked.ndim != 1:
            return "the contribution is missing or not a uint64 vector"
        try:
            layout = fixed_point.Layout.from_json(answer.reply.layout)
        except (AggregationError, ValueError) as exc:
            return f"the contribution's layout is not valid: {exc}"
        if layout.size != masked.size:
            return f"a contribution of {masked.size} values for a layout of {layout.size}"
        if layout.max_participants < participants:
            return (f"the contribution leaves room for {layout.max_participants} nodes' sum, "
                    f"not {participants}")
        return None

    async def _reveal(self, run: _Run, indices: np.ndarray, mac: np.ndarray, *, step: str,
                      number: int) -> VariantTable:
        """The variants behind `indices` of the job's order (positions a plan needs on the
        way, or the ones the result releases)."""
        request = RoundRequest(run.job.id, RoundKind.REVEAL, run.participants, run.attempt,
                               step=step, number=number,
                               arrays={"tokens": run.union[indices], "mac": mac})
        answers = await asyncio.gather(*(self._ask(m, request, run)
                                         for m in self._members(run)))
        failed = [a for a in answers if not a.ok]
        if failed:
            raise JobFailed("nodes refused to reveal the released variants: " + "; ".join(
                f"{a.member.id}: {a.problem}" for a in failed))
        return VariantTable.merge(indices, {a.member.id: a.reply.arrays for a in answers
                                            if a.reply is not None})

    async def _broadcast(self, run: _Run, kind: RoundKind) -> None:
        request = RoundRequest(run.job.id, kind, run.participants, run.attempt)
        await asyncio.gather(*(self._ask(m, request, run) for m in self._members(run)))


def _persistable(run: _Run) -> _Run:
    """The run without what is re-read after a restart (the network, from its file)."""
    return _Run(run.job, run.network, list(run.participants), run.attempt, run.union,
                dict(run.nodes), dict(run.traffic))
