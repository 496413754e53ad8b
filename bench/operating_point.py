"""Benchmark: how often an operating point chosen on a validation split meets the line's budget on new parts.

A training run chooses its threshold (and review band) on a validation split of a few hundred images and is
judged on a test split of the same size. Both are images the model never trained on, so for one trained
model they are exchangeable: this benchmark pools a run's validation and test scores, draws many
stratified splits of the same sizes, chooses each rule's point on the "validation" part and judges the
"test" part against the line's budget (``inspector.deployability.LineBudget``: escapes <= 2 %, false
rejects <= 5 %, review <= 10 %). The share of draws that meet all three is the chance that the verdict on a
fresh sample says DEPLOYABLE for that model and rule. Rules (``inspector.operating_point``):

* ``escape_0.5pct``: an escape rate of 0.5 %, with a review band up to the false-reject budget when the
  data cannot support it (the default until the fourteenth session);
* ``budget``: the point most likely to meet the line's budget (the default now);
* ``ceiling``: whether any threshold or band meets the budget on the test part itself (chosen on the
  data it is judged on: how often a rule could succeed at all, given the test sample's own noise).

Also recorded: each rule on the run's actual validation/test split, and the mean rates over the draws.

Example:
  .venv/bin/python -m bench.operating_point runs/mt0 runs/mt1 --out bench/results/operating_point.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench.common import repo_relative
from inspector.decision import DecisionPolicy
from inspector.deployability import LineBudget
from inspector.operating_point import Target, choose_policy, outcomes

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "operating_point.json"
BUDGET = LineBudget()

Rule = Callable[[np.ndarray, np.ndarray], DecisionPolicy]
RULES: Dict[str, Rule] = {
    "escape_0.5pct": lambda s, d: choose_policy(
        s, d, Target.ESCAPE, 0.005, 0.0, BUDGET.max_false_reject_rate, BUDGET.max_review_rate
    )[0],
    "budget": lambda s, d: choose_policy(
        s,
        d,
        Target.BUDGET,
        max_escape_rate=BUDGET.max_escape_rate,
        max_false_reject_rate=BUDGET.max_false_reject_rate,
        max_review_rate=BUDGET.max_review_rate,
    )[0],
}


def rates(scores: np.ndarray, is_defect: np.ndarray, policy: DecisionPolicy) -> Tuple[float, float, float]:
    """(escape, false reject, review) rates of ``policy``."""
    passed, failed = outcomes(scores, policy)
    return (
        float((passed & is_defect).sum() / is_defect.sum()),
        float((failed & ~is_defect).sum() / (~is_defect).sum()),
        float((~passed & ~failed).mean()),
    )


def meets(escape: float, false_reject: float, review: float) -> bool:
    return (
        escape <= BUDGET.max_escape_rate
        and false_reject <= BUDGET.max_false_reject_rate
        and review <= BUDGET.max_review_rate
    )


def any_point_meets(scores: np.ndarray, is_defect: np.ndarray) -> bool:
    """Whether some threshold or band ``[low, high)`` between the scores meets the budget on these scores."""
    values = np.unique(scores)
    cuts = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2, [np.nextafter(1.0, 2.0)]])
    defects, goods = np.sort(scores[is_defect]), np.sort(scores[~is_defect])
    defects_below = np.searchsorted(defects, cuts)
    goods_below = np.searchsorted(goods, cuts)
    escape = defects_below[:, None] / defects.size
    false_reject = (goods.size - goods_below[None, :]) / goods.size
    below = defects_below + goods_below
    review = (below[None, :] - below[:, None]) / scores.size
    ordered = np.arange(cuts.size)[:, None] <= np.arange(cuts.size)[None, :]
    ok = (
        ordered
        & (escape <= BUDGET.max_escape_rate)
        & (false_reject <= BUDGET.max_false_reject_rate)
        & (review <= BUDGET.max_review_rate)
    )
    return bool(ok.any())


def load_run(run_dir: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{"val"|"test": (defect scores, is_defect)} from a run folder's predictions (the float model)."""
    manifest = json.loads((run_dir / "run.json").read_text())
    good = list(manifest["labels"]).index(manifest["good_class"])
    predictions = json.loads((run_dir / "predictions.json").read_text())
    out = {}
    for split in ("val", "test"):
        probs = np.asarray(predictions[split]["probabilities"], np.float64)
        labels = np.asarray(predictions[split]["labels"])
        out[split] = (1.0 - probs[:, good], labels != good)
    return out


def study_run(run_dir: Path, draws: int, seed: int) -> dict:
    data = load_run(run_dir)
    (val_s, val_d), (test_s, test_d) = data["val"], data["test"]
    scores, is_defect = np.concatenate([val_s, test_s]), np.concatenate([val_d, test_d])
    defect_idx, good_idx = np.flatnonzero(is_defect), np.flatnonzero(~is_defect)
    n_defects, n_goods = int(val_d.sum()), int((~val_d).sum())
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(draws):
        d, g = rng.permutation(defect_idx), rng.permutation(good_idx)
        splits.append((np.concatenate([d[:n_defects], g[:n_goods]]), np.concatenate([d[n_defects:], g[n_goods:]])))
    rules = {}
    for name, rule in RULES.items():
        actual = rates(test_s, test_d, rule(val_s, val_d))
        drawn = np.array([rates(scores[t], is_defect[t], rule(scores[v], is_defect[v])) for v, t in splits])
        rules[name] = {
            "actual_split": {"meets_budget": meets(*actual), **_named(actual)},
            "draws_meeting_budget": round(float(np.mean([meets(*r) for r in drawn])), 3),
            "mean_rates": _named(drawn.mean(axis=0)),
        }
    rules["ceiling"] = {
        "actual_split": {"meets_budget": any_point_meets(test_s, test_d)},
        "draws_meeting_budget": round(float(np.mean([any_point_meets(scores[t], is_defect[t]) for _, t in splits])), 3),
    }
    return {
        "run_dir": repo_relative(str(run_dir.resolve())),
        "validation": {"defects": n_defects, "goods": n_goods},
        "test": {"defects": int(test_d.sum()), "goods": int((~test_d).sum())},
        "rules": rules,
    }


def _named(values: Sequence[float]) -> dict:
    return {k: round(float(v), 4) for k, v in zip(("escape_rate", "false_reject_rate", "review_rate"), values)}


def study(run_dirs: Sequence[Path], draws: int, seed: int, out: Optional[Path]) -> dict:
    runs = [study_run(Path(r), draws, seed) for r in run_dirs]
    names = list(RULES) + ["ceiling"]
    summary = {
        name: {
            "mean_draws_meeting_budget": round(
                float(np.mean([r["rules"][name]["draws_meeting_budget"] for r in runs])), 3
            ),
            "actual_splits_meeting_budget": sum(r["rules"][name]["actual_split"]["meets_budget"] for r in runs),
        }
        for name in names
    }
    result = {
        "benchmark": "operating_point",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget": BUDGET.model_dump(),
        "draws": draws,
        "seed": seed,
        "measure": "float model, one view; validation and test scores pooled and redrawn at their sizes",
        "runs": runs,
        "summary": summary,
    }
    for run in runs:
        cells = "  ".join(
            f"{n} {r['draws_meeting_budget']:.2f} [{'ok' if r['actual_split']['meets_budget'] else 'no'}]"
            for n, r in run["rules"].items()
        )
        print(f"{run['run_dir']}: {cells}")
    for name, s in summary.items():
        print(
            f"{name:14s} draws meeting the budget {s['mean_draws_meeting_budget']:.2f} (mean over runs); "
            f"actual splits {s['actual_splits_meeting_budget']} of {len(runs)}"
        )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.operating_point", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders (predictions.json, run.json)")
    parser.add_argument("--draws", type=int, default=200, help="redrawn splits per run (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULT, help=f"result JSON (default {RESULT})")
    args = parser.parse_args(argv)
    study(args.runs, args.draws, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
