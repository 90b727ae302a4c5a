"""Test metrics: ACC and AUC exactly as medmnist's Evaluator computes them
(so numbers compare with the MedMNIST v2 tables), plus macro-F1, the
confusion matrix and per-class accuracy."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(labels: np.ndarray, logits: np.ndarray, n_classes: int,
                           task: str = "multi-class") -> dict:
    from medmnist.evaluator import getACC, getAUC
    from sklearn.metrics import confusion_matrix, f1_score

    labels = np.asarray(labels).reshape(-1)
    scores = softmax(np.asarray(logits, dtype=np.float64))
    acc = float(getACC(labels, scores, task))
    present = np.unique(labels)
    if len(present) == n_classes:
        auc, auc_note = float(getAUC(labels, scores, task)), None
    else:
        # roc_auc_score is undefined for a class with no positive example;
        # medmnist's getAUC would raise. Report it as missing, never as 0.
        auc, auc_note = float("nan"), f"AUC undefined: only {len(present)} of {n_classes} classes in the test labels"
    pred = scores.argmax(axis=1)
    cm = confusion_matrix(labels, pred, labels=np.arange(n_classes))
    support = cm.sum(axis=1)
    per_class = [float(cm[i, i] / support[i]) if support[i] else float("nan") for i in range(n_classes)]
    f1 = float(f1_score(labels, pred, labels=np.arange(n_classes), average="macro", zero_division=0))
    out = {"acc": acc, "auc": auc, "macro_f1": f1, "per_class_acc": per_class,
           "confusion_matrix": cm.tolist(), "n_test": int(labels.shape[0])}
    if auc_note:
        out["auc_note"] = auc_note
    return out
