"""The static leaderboard: built from result records alone (never live objects), validated, grouped by
dataset fingerprint and protocol version, rendered as a self-contained, deterministic static site.

    from harness.leaderboard import build_site
    report = build_site("leaderboard/results", "leaderboard/site")
    print("\\n".join(report.lines()))

See docs/leaderboard.md.
"""

from harness.leaderboard.site import SITE_MARKER, BuildReport, build_site

__all__ = ["SITE_MARKER", "BuildReport", "build_site"]
