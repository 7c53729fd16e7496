"""A claim as data: what it states, at which scale, on which profiles, judged by which checks.

Imports no torch (nor anything heavy): the service lists claims and their profiles from these
specs, and the judge reads them. Measuring lives apart, in each claim's ``measure.py``.

Profiles name no GPU: ``smoke`` runs on a CPU (kernels through Triton's interpreter) and decides
nothing; ``full`` runs on any CUDA GPU. A claim may keep older profile ids (``h100``) so the
records committed under them still name a profile the claim knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPS = ("<=", ">=", "<", ">")
SMOKE = "smoke"
FULL = "full"


@dataclass(frozen=True)
class CheckSpec:
    """One measurable condition: ``figures[figure] op target``.

    `gating` checks decide the verdict; the others are reported. `profiles` limits the check to
    those profiles (None: every profile). `spread`, when set, names the figure holding the
    measurement's spread (the standard error of a mean over seeds, ``judge.mean_and_sem``: one
    rule for every claim): a gating check whose ``measured ± spread`` interval contains the
    target cannot be decided and makes the verdict ``inconclusive``.
    """

    name: str
    figure: str
    op: str
    target: float
    gating: bool = True
    profiles: tuple[str, ...] | None = None
    description: str = ""
    spread: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"check {self.name}: op {self.op!r} is not one of {OPS}")

    def applies_to(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles


@dataclass(frozen=True)
class ClaimSpec:
    """Everything about a claim except its measurement.

    `paper` is the paper's short name, `arxiv` its arXiv id (without prefix); `scale` says what
    the run measures against what the paper ran; `profiles` are those the claim runs (the
    first is the default); `conclusive` those whose verdict may be other than inconclusive;
    `legacy_profiles` maps an old profile id to the one that replaced it (kept for committed
    records and queued jobs); `gpus` the GPUs a profile needs when it is more than one (a run
    across them is launched by torchrun; the job API leases it only to a worker that has them).
    """

    claim_id: str
    paper: str
    arxiv: str
    statement: str
    scale: str
    profiles: tuple[str, ...]
    checks: tuple[CheckSpec, ...]
    notes: str = ""
    conclusive: tuple[str, ...] = (FULL,)
    legacy_profiles: dict[str, str] = field(default_factory=dict)
    gpus: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for profile, n in self.gpus.items():
            if profile not in self.all_profiles or not isinstance(n, int) or n < 1:
                raise ValueError(f"claim {self.claim_id}: gpus[{profile!r}] = {n!r}")
        names = [c.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError(f"claim {self.claim_id}: two checks share a name")
        for c in self.checks:
            unknown = set(c.profiles or ()) - set(self.all_profiles)
            if unknown:
                raise ValueError(f"check {c.name}: unknown profiles {sorted(unknown)}")

    @property
    def paper_ref(self) -> str:
        """The payload's paper field: ``arxiv:<id>`` (the bare name of a paper with no arXiv id)."""
        return f"arxiv:{self.arxiv}" if self.arxiv else self.paper

    @property
    def all_profiles(self) -> tuple[str, ...]:
        """The profiles a job may name: the current ones, then the legacy ids."""
        return self.profiles + tuple(p for p in self.legacy_profiles if p not in self.profiles)

    def canonical_profile(self, profile: str) -> str:
        """The current profile a (possibly legacy) profile id runs as."""
        if profile in self.profiles:
            return profile
        if profile in self.legacy_profiles:
            return self.legacy_profiles[profile]
        raise ValueError(
            f"unknown profile {profile!r} for claim {self.claim_id}; known: {self.all_profiles}"
        )

    def gpus_for(self, profile: str) -> int:
        """GPUs a run of `profile` needs: as `gpus` names it (a run that spans several goes
        through torchrun, one process a GPU), else 0 for smoke (the CPU) and 1 otherwise."""
        current = self.canonical_profile(profile)
        if current in self.gpus:
            return self.gpus[current]
        return 0 if current == SMOKE else 1

    def checks_for(self, profile: str) -> tuple[CheckSpec, ...]:
        current = self.canonical_profile(profile)
        return tuple(c for c in self.checks if c.applies_to(profile) or c.applies_to(current))
