"""Gate profiles: which datasets and seeds a regression gate runs a submission on.

A profile is small on purpose: the gate runs on every change, so it takes the datasets that compile in
seconds and a single seed. A submission is gated on the profile's datasets that its own config declares
(Gen_R+S declares no ml-small, so `quick` gates it on the three simulations only).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.data.spec import DatasetSpec
from harness.errors import HarnessError


@dataclass(frozen=True)
class Profile:
    name: str
    datasets: tuple[str, ...]  # canonical dataset names
    seeds: tuple[int, ...]
    description: str


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            "quick",
            ("sim1", "sim2", "sim3", "ml-small"),
            (0,),
            "the three simulations of paper §5 at their default parameters and MovieLens ml-latest-small, seed 0",
        ),
        Profile("sims", ("sim1", "sim2", "sim3"), (0,), "the three simulations only, seed 0 (no raw archive needed)"),
    )
}
DEFAULT_PROFILE = "quick"
# headline: R@K over all / head / torso at the dataset's headline K; all: every cutoff of the record.
METRIC_SETS = ("headline", "all")


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise HarnessError(f"gate profile {name!r} is unknown; available: {', '.join(PROFILES)}") from None


def profile_datasets(profile: Profile, declared: tuple[str, ...], submission: str) -> list[str]:
    """The profile's datasets that the submission declares, in the profile's order (canonical names)."""
    declared_names = {str(DatasetSpec.parse(name)) for name in declared}
    chosen = [name for name in profile.datasets if name in declared_names]
    if not chosen:
        raise HarnessError(
            f"submission {submission!r} declares none of profile {profile.name!r}'s datasets "
            f"({', '.join(profile.datasets)}); its config lists {', '.join(sorted(declared_names))}"
        )
    return chosen
