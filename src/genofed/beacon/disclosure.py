"""Statistical disclosure control for counts that leave the node.

A count `c` with 0 < c < floor is never revealed: it is reported as `floor` with
`countPrecision: "imprecise"` and `countAdjustedTo: [floor]` (Beacon v2.2 fields), meaning
"between 1 and floor". Zero stays zero and counts at or above the floor are exact.

Rare alleles (allele count in the dataset under the floor) take part in no boolean answer, so a
yes/no can never reveal that a rare allele is carried by a handful of people. Registered callers
(count granularity) see them, flagged as carried by between 1 and floor - 1 individuals, with a
handover to the dataset's access application. Every answer below record level is also accounted
against each carrier's exposure budget (:mod:`genofed.beacon.exposure`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DisclosedCount:
    value: int
    precision: str  # exact / imprecise
    adjusted_to: int | None = None

    @property
    def exists(self) -> bool:
        return self.value > 0

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {"countPrecision": self.precision}
        if self.adjusted_to is not None:
            out["countAdjustedTo"] = [self.adjusted_to]
        return out


def disclose(count: int, floor: int) -> DisclosedCount:
    if 0 < count < floor:
        return DisclosedCount(floor, "imprecise", floor)
    return DisclosedCount(count, "exact")
