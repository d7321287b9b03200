"""Early stopping that float noise cannot flip, shared by SASRec, BERT4Rec and DiffRec.

Why not the usual "stop after `patience` epochs without a strictly better validation recall, keep the best
epoch": on ml-small an epoch is 18 optimiser steps and validation is ~600 users, so on the early popularity
plateau validation moves by one to three hits from epoch to epoch. A one-hit difference decided which epoch
was "best" and when training stopped, and that difference came from float rounding: the same code, data and
seed stopped at epoch 11 on one machine and 23 on another (test R@30 0.078 vs 0.109, issue 16).

The rule here counts in validation *hits* and optimiser *steps*:
- a gain is a validation score more than `tolerance_hits` hits above the score at the last gain (so a
  steady climb of one hit per epoch still counts, every second epoch);
- training stops once `patience_steps` optimiser steps have passed without a gain (steps, not epochs, so
  the patience means the same amount of training on a dataset with 2 steps per pass and on one with 200);
- the weights kept are the latest epoch's whose score is within `tolerance_hits` of the best seen: on a
  plateau the latest weights win, rather than whichever epoch noise put one hit higher.

`keep_within_se` (0: off) widens the last tolerance to that many binomial standard errors of the best score,
sqrt(best * (n - best) / n) hits for n validation users. One hit protects against float noise; this
protects against *sampling* noise, which matters where validation barely measures what test does. On SIM2
a validation target is the first item of a random pair (unpredictable by construction, R@10 ~ 10/30 for
every model) while the test target is its cluster mate, so validation scores wander by a few hits around
0.35 whatever the model has learnt; picking the best epoch there picks noise, and SASRec seed 1 kept epoch
3 (test R@10 0.676) where every later epoch tests at ~0.99. Within one standard error the latest weights win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ValidationStopper:
    patience_steps: int
    tolerance_hits: int
    keep_within_se: float = 0.0  # see the module docstring
    n_valid: int = 0  # validation users: the standard error's n
    best_hits: int = -1  # the highest validation score seen
    anchor_hits: int = -1  # the score at the last gain
    steps_since_gain: int = 0
    kept_epoch: int = 0  # the epoch whose weights are kept
    stopped_after_step: int | None = None
    total_steps: int = 0
    gains: list[int] = field(default_factory=list)  # epochs that counted as a gain

    def observe(self, epoch: int, hits: int, steps: int) -> tuple[bool, bool]:
        """After `epoch` (`steps` optimiser steps, `hits` validation hits): (keep these weights, stop now)."""
        self.total_steps += steps
        if self.anchor_hits < 0 or hits > self.anchor_hits + self.tolerance_hits:
            self.anchor_hits = hits
            self.steps_since_gain = 0
            self.gains.append(epoch)
        else:
            self.steps_since_gain += steps
        self.best_hits = max(self.best_hits, hits)
        keep = hits >= self.best_hits - self.keep_tolerance()
        if keep:
            self.kept_epoch = epoch
        stop = self.steps_since_gain >= self.patience_steps
        if stop:
            self.stopped_after_step = self.total_steps
        return keep, stop

    def keep_tolerance(self) -> float:
        """Hits below the best that an epoch may score and still be kept."""
        if self.keep_within_se <= 0 or self.n_valid <= 0 or self.best_hits < 0:
            return float(self.tolerance_hits)
        best = min(self.best_hits, self.n_valid)
        se = math.sqrt(best * (self.n_valid - best) / self.n_valid)
        return max(float(self.tolerance_hits), self.keep_within_se * se)

    def describe(self) -> dict:
        return {
            "rule": "stop after patience_steps optimiser steps without a gain of more than tolerance_hits "
                    "validation hits over the last gain; keep the latest epoch within tolerance_hits of the best"
                    + (" (or keep_within_se binomial standard errors, if more)" if self.keep_within_se > 0 else ""),
            "patience_steps": self.patience_steps,
            "tolerance_hits": self.tolerance_hits,
            "keep_within_se": self.keep_within_se,
            "keep_tolerance_hits": round(self.keep_tolerance(), 3),
            "kept_epoch": self.kept_epoch,
            "best_valid_hits": self.best_hits,
            "gain_epochs": list(self.gains),
            "stopped_early": self.stopped_after_step is not None,
            "steps_run": self.total_steps,
        }
