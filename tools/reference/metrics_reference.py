#!/usr/bin/python3
"""Golden values for the Go package metrics, computed with scikit-learn and numpy.

Run from the repository root with Debian's python3 (apt-get install python3-sklearn):

    /usr/bin/python3 tools/reference/metrics_reference.py

It writes metrics/testdata/sklearn_golden.json. Scores are rounded to a coarse
grid so every case holds ties, the part of ranking metrics most often wrong.
"""
import json
import os
from fractions import Fraction

import numpy as np
import sklearn
from sklearn import metrics

OUT = os.path.join("metrics", "testdata", "sklearn_golden.json")


def exact_criteria(cm):
    """Criteria as exact fractions, so equal values on paper compare equal."""
    tn, fp, fn, tp = (int(v) for v in cm.ravel())

    def ratio(a, b):
        return Fraction(a, b) if b else Fraction(0)

    f1, normal_f1 = ratio(2 * tp, 2 * tp + fp + fn), ratio(2 * tn, 2 * tn + fn + fp)
    return {"macro-f1": (f1 + normal_f1) / 2, "f1": f1, "accuracy": ratio(tp + tn, tn + fp + fn + tp)}


def select(y, scores, steps):
    """The paper's grid search; the lowest threshold wins ties (first of np.argmax-like scan)."""
    grid = np.linspace(scores.min(), scores.max(), steps)
    best = {}
    for t in grid:
        cm = metrics.confusion_matrix(y, (scores >= t).astype(int), labels=[0, 1])
        for name, value in exact_criteria(cm).items():
            if name not in best or value > best[name][1]:
                best[name] = (float(t), value)
    return {name: {"threshold": t, "score": float(v)} for name, (t, v) in best.items()}


def case(rng, n, decimals, abnormal_fraction, shift):
    labels = rng.random(n) < abnormal_fraction
    labels[0], labels[1] = True, False  # both classes present
    scores = rng.normal(size=n) + shift * labels
    scores = np.round(scores, decimals)
    y = labels.astype(int)

    fpr, tpr, roc_thr = metrics.roc_curve(y, scores, drop_intermediate=False)
    prec, rec, pr_thr = metrics.precision_recall_curve(y, scores)
    thresholds = sorted(set(np.quantile(scores, [0.0, 0.1, 0.37, 0.5, 0.8, 1.0]).tolist()))
    thresholds.append(float(scores.max()) + 1.0)  # nothing predicted abnormal
    at = []
    for t in thresholds:
        pred = (scores >= t).astype(int)
        cm = metrics.confusion_matrix(y, pred, labels=[0, 1])
        at.append({
            "threshold": t,
            "tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tp": int(cm[1, 1]),
            "accuracy": metrics.accuracy_score(y, pred),
            "precision": metrics.precision_score(y, pred, zero_division=0),
            "recall": metrics.recall_score(y, pred, zero_division=0),
            "specificity": metrics.recall_score(y, pred, pos_label=0, zero_division=0),
            "f1": metrics.f1_score(y, pred, zero_division=0),
            "normal_f1": metrics.f1_score(y, pred, pos_label=0, zero_division=0),
            "macro_f1": metrics.f1_score(y, pred, average="macro", zero_division=0),
            "weighted_f1": metrics.f1_score(y, pred, average="weighted", zero_division=0),
        })
    normal_scores = scores[~labels]
    return {
        "scores": scores.tolist(),
        "labels": labels.tolist(),
        "auc": metrics.roc_auc_score(y, scores),
        "aupr": metrics.average_precision_score(y, scores),
        # sklearn's first ROC threshold is a sentinel (max+1 or inf by version): skip it.
        "roc_fpr": fpr.tolist(), "roc_tpr": tpr.tolist(), "roc_thresholds": roc_thr[1:].tolist(),
        # sklearn orders the PR curve by increasing threshold and appends (1, 0).
        "pr_precision": prec.tolist(), "pr_recall": rec.tolist(), "pr_thresholds": pr_thr.tolist(),
        "at": at,
        "select_1000": select(y, scores, 1000),
        "select_37": select(y, scores, 37),
        "normal_p95": float(np.percentile(normal_scores, 95)),
        "normal_p50": float(np.percentile(normal_scores, 50)),
        "normal_p12_5": float(np.percentile(normal_scores, 12.5)),
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
    }


def main():
    rng = np.random.default_rng(8499)
    cases = []
    for n, decimals, frac, shift in [(6, 0, 0.5, 1.0), (20, 1, 0.5, 1.0), (57, 1, 0.3, 0.5),
                                     (200, 1, 0.6, 2.0), (413, 2, 0.6, 0.8), (1000, 0, 0.1, 0.3)]:
        cases.append(case(rng, n, decimals, frac, shift))
    doc = {"generator": "tools/reference/metrics_reference.py",
           "sklearn": sklearn.__version__, "numpy": np.__version__, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", OUT, len(cases), "cases")


if __name__ == "__main__":
    main()
