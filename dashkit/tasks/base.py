"""The Task: data splits, loss, metric, shapes and defaults of one learning problem."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from ..metrics import get_metric
from ..registry import Registry

__all__ = ["Task", "TaskDefaults", "TASKS", "register", "get", "names", "KINDS", "split_targets", "tensor_dataset",
           "SmallSplitWarning", "SMALL_SPLIT_SIZE", "SMALL_SPLIT_PER_CLASS", "small_split_note", "kfold_indices",
           "ShuffledTargets", "shuffle_targets", "split_digest"]

KINDS = ("classification", "multilabel", "regression", "dense")

TASKS = Registry("task")
register = TASKS.register


# A validation or test split is too small to trust below these sizes. With n samples a 0-1 error has a
# standard error of up to 50 / sqrt(n) points: 9 points at n = 30, so two tuning trials (or two epochs) must differ
# by about 25 points before a 30-sample split can tell them apart; fewer is worse. Per class: below 5 examples a
# single sample moves that class's recall by more than 20 points, and a class-weighted metric follows single samples.
SMALL_SPLIT_SIZE = 30
SMALL_SPLIT_PER_CLASS = 5


class SmallSplitWarning(UserWarning):
    """A validation or test split is too small for its metric to be trusted (see :func:`small_split_note`)."""


def small_split_note(split: str, size: int, per_class: Optional[Dict[Any, int]] = None) -> Optional[str]:
    """Why a split is too small to trust, or None when it is large enough.

    A split is too small with fewer than ``SMALL_SPLIT_SIZE`` (30) samples in all or, for classification, fewer
    than ``SMALL_SPLIT_PER_CLASS`` (5) examples of a class the model was trained on.

    Args:
        split: the split's name, for the note ("val", "test").
        size: its number of samples.
        per_class: for classification, {class label: examples in the split} for the classes to check.

    Returns:
        A sentence with the size, the per-class counts and the standard error they allow; None when not small.
    """
    per_class = dict(per_class or {})
    few = {label: n for label, n in per_class.items() if n < SMALL_SPLIT_PER_CLASS}
    if size >= SMALL_SPLIT_SIZE and not few:
        return None
    counts = f" (per class: {', '.join(f'{label!r}: {n}' for label, n in per_class.items())})" if per_class else ""
    error = (f" (a 0-1 error on {size} samples has a standard error of up to {50 / math.sqrt(max(size, 1)):.0f} "
             "points)" if per_class else "")
    return (f"the {split} split has {size} samples{counts}, fewer than {SMALL_SPLIT_SIZE} in all or "
            f"{SMALL_SPLIT_PER_CLASS} in a class: its metric is too noisy to rank tuning trials or epochs, or to "
            f"quote to a few points{error}")


def names(pattern: str = "*"):
    """Names of the registered tasks."""
    return TASKS.names(pattern)


def get(name: str, **params: Any) -> "Task":
    """Build a registered task, e.g. ``get("mnist1d", n_train=1000)``."""
    return TASKS.get(name, **params)


@dataclass
class TaskDefaults:
    """What a task brings to a run unless the user overrides it.

    backbone / backbone_kwargs: a name in ``dashkit.backbones`` and its keyword arguments (in_channels and
    num_classes are filled in from the task). kernel_sizes / dilations: the search space. search, tune and
    retrain: overrides of the stage configs (e.g. ``{"grad_scale": 500}``), applied on top of the preset.
    """

    backbone: str = "resnet1d"
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    kernel_sizes: Tuple[int, ...] = (3, 7, 11, 15, 19)
    dilations: Tuple[int, ...] = (1, 3, 7, 15)
    search: Dict[str, Any] = field(default_factory=dict)
    tune: Dict[str, Any] = field(default_factory=dict)
    retrain: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """One learning problem.

    Attributes:
        name: registry name.
        kind: "classification" (y: (N,) int64 class indices), "multilabel" (y: (N, labels) float 0/1),
            "regression" (y: (N, outputs) float) or "dense" (y: (N, C_out, *spatial) float, one output per
            input position).
        train, val, test: datasets yielding (x, y); x has shape ``in_shape``.
        in_shape: (C, L) for 1D, (C, H, W) for 2D.
        num_outputs: classes, labels or output channels.
        metric_name: a key of ``dashkit.metrics.METRICS``; lower is better.
        defaults: backbone, search space and stage overrides.
        decode: optional map applied to outputs and targets before the metric (e.g. undo normalisation).
        loss_fn: optional loss(y_hat, y); by default cross-entropy, BCE-with-logits or MSE by kind.
        info: free-form description (source, sizes, licence notes).
    """

    name: str
    kind: str
    train: Dataset
    val: Dataset
    test: Dataset
    in_shape: Tuple[int, ...]
    num_outputs: int
    metric_name: str
    defaults: TaskDefaults = field(default_factory=TaskDefaults)
    decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Task kind {self.kind!r} is not one of {KINDS}")
        get_metric(self.metric_name)  # raises on an unknown name
        if len(self.in_shape) not in (2, 3):
            raise ValueError(f"Task in_shape {self.in_shape!r} must be (C, L) or (C, H, W)")
        for split in ("train", "val", "test"):
            if len(getattr(self, split)) == 0:
                raise ValueError(f"Task {self.name!r}: the {split} split is empty")

    @property
    def dims(self) -> int:
        """Number of spatial dimensions: 1 or 2."""
        return len(self.in_shape) - 1

    @property
    def dense(self) -> bool:
        return self.kind == "dense"

    def loss(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(y_hat, y)
        if self.kind == "classification":
            return F.cross_entropy(y_hat, y)
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(y_hat, y.to(y_hat.dtype))
        return F.mse_loss(y_hat, y.to(y_hat.dtype))

    def metric(self, y_hat: torch.Tensor, y: torch.Tensor) -> float:
        """The task's metric over a whole split (outputs and targets concatenated); lower is better."""
        if self.decode is not None:
            y_hat, y = self.decode(y_hat), self.decode(y)
        value = get_metric(self.metric_name)(y_hat, y)
        if not math.isfinite(value):
            raise FloatingPointError(f"metric {self.metric_name} of task {self.name!r} is not finite: {value}")
        return value

    def chance_metric(self, split: str = "test") -> Optional[float]:
        """The task's metric on a split for the best guess that ignores the input.

        Classification: always the split's majority class; for ``error_pct`` that is 100 minus the majority
        class's share, for ``1-macro_f1`` it is 1 - F1(majority) / K, since every other class has F1 = 0.
        Multi-label: every label scored by its prevalence in the split, the same score for every sample (so
        ``1-auroc`` is 0.5). Regression: the split's mean target for every sample (for ``mse``, the split's
        variance in the targets' units, after ``decode``). None for dense tasks.

        Args:
            split: "train", "val" or "test".
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split = {split!r}: expected 'train', 'val' or 'test'")
        if self.kind not in ("classification", "multilabel", "regression"):
            return None
        ys = split_targets(getattr(self, split))
        if self.kind == "regression":
            ys = ys.float()
            return float(self.metric(ys.mean(dim=0, keepdim=True).expand_as(ys).clone(), ys))
        if self.kind == "classification":
            ys = ys.long()
            majority = int(torch.bincount(ys, minlength=self.num_outputs).argmax())
            logits = torch.zeros(len(ys), self.num_outputs)
            logits[:, majority] = 1.0
            return float(get_metric(self.metric_name)(logits, ys))
        ys = ys.float()
        prevalence = ys.mean(dim=0, keepdim=True).clamp(1e-6, 1 - 1e-6)
        return float(get_metric(self.metric_name)(torch.logit(prevalence).expand_as(ys).clone(), ys))

    def to_labels(self, y_hat: Any) -> np.ndarray:
        """A classification task's predictions as the user's labels.

        The labels are ``info["classes"]`` (the labels in class-index order, as ``from_arrays`` records them);
        a task without that entry has the labels 0..num_outputs-1.

        Args:
            y_hat: class indices (N,) or outputs (N, num_outputs) (logits or probabilities; the largest wins),
                as a torch tensor, numpy array or list.

        Returns:
            (N,) numpy array of labels, e.g. ``array(['1', '3', '2'], dtype='<U1')`` for string labels.
        """
        if self.kind != "classification":
            raise ValueError(f"to_labels: task {self.name!r} is kind={self.kind!r}; only classification tasks "
                             "have labels")
        if isinstance(y_hat, torch.Tensor):
            y_hat = y_hat.detach().cpu().float().numpy() if y_hat.is_floating_point() else y_hat.cpu().numpy()
        y_hat = np.asarray(y_hat)
        if y_hat.ndim == 2:
            if y_hat.shape[1] != self.num_outputs:
                raise ValueError(f"y_hat has shape {y_hat.shape}; expected (N,) class indices or (N, "
                                 f"{self.num_outputs}) outputs, one column per class")
            y_hat = y_hat.argmax(axis=1)
        elif y_hat.ndim != 1:
            raise ValueError(f"y_hat has shape {y_hat.shape}; expected (N,) class indices or (N, "
                             f"{self.num_outputs}) outputs")
        if y_hat.size and (y_hat.dtype.kind not in "iu" or y_hat.min() < 0 or y_hat.max() >= self.num_outputs):
            raise ValueError(f"y_hat holds values such as {y_hat.ravel()[0].item()!r} (dtype {y_hat.dtype}); "
                             f"expected integer class indices 0..{self.num_outputs - 1} or (N, {self.num_outputs}) "
                             "outputs")
        classes: Sequence[Any] = self.info.get("classes", range(self.num_outputs))
        return np.asarray(list(classes))[y_hat.astype(np.int64)]

    def too_small(self, split: str = "val") -> bool:
        """Whether a split is too small for its metric to be trusted, by :func:`small_split_note`'s rule.

        For classification the per-class rule counts only the classes that the train split has, since the
        others cannot be predicted anyway. A pipeline can use it to skip or shorten tuning on a tiny validation
        split, whose ranking of trials would be noise.

        Args:
            split: "val" or "test" (or "train").
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split = {split!r}: expected 'train', 'val' or 'test'")
        data = getattr(self, split)
        per_class = None
        if self.kind == "classification":
            counts = torch.bincount(split_targets(data).long(), minlength=self.num_outputs)
            trained = torch.bincount(split_targets(self.train).long(), minlength=self.num_outputs) > 0
            per_class = {i: int(counts[i]) for i in range(self.num_outputs) if trained[i]}
        return small_split_note(split, len(data), per_class) is not None

    def summary(self) -> str:
        return (f"{self.name}: {self.kind}, in {tuple(self.in_shape)}, outputs {self.num_outputs}, "
                f"train/val/test {len(self.train)}/{len(self.val)}/{len(self.test)}, metric {self.metric_name}")


def split_targets(data: Dataset) -> torch.Tensor:
    """Every target of a split, stacked: (N, ...), without reading the inputs where the dataset allows it.

    A ``TensorDataset`` gives its second tensor, a ``Subset`` its parent's targets at its indices, a
    ``ConcatDataset`` its parts' targets one after the other, and a dataset
    with a ``targets()`` method (the NB360 loaders' datasets, which decode audio or cut windows when a sample is
    read) whatever that returns; any other dataset is read sample by sample.
    """
    if isinstance(data, TensorDataset):
        return data.tensors[1]
    if isinstance(data, Subset):
        return split_targets(data.dataset)[torch.as_tensor(list(data.indices), dtype=torch.long)]
    if isinstance(data, ConcatDataset):
        return torch.cat([split_targets(part) for part in data.datasets])
    targets = getattr(data, "targets", None)
    if callable(targets):
        return targets()
    return torch.stack([torch.as_tensor(data[i][1]) for i in range(len(data))])


def _targets_if_cheap(data: Dataset) -> Optional[torch.Tensor]:
    """`split_targets` where it reads no inputs (tensors, subsets and concatenations of them, a ``targets()``
    method); None for a dataset that would be read sample by sample."""
    if isinstance(data, TensorDataset) or callable(getattr(data, "targets", None)):
        return split_targets(data)
    if isinstance(data, Subset):
        parent = _targets_if_cheap(data.dataset)
        return None if parent is None else parent[torch.as_tensor(list(data.indices), dtype=torch.long)]
    if isinstance(data, ConcatDataset):
        parts = [_targets_if_cheap(part) for part in data.datasets]
        return None if any(p is None for p in parts) else torch.cat(parts)
    return None


def _hash_into(h: Any, obj: Any) -> None:
    """Feed tensors, arrays, numbers and nested tuples / lists / dicts of them to the hash ``h``."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            h.update(f"{key}=".encode())
            _hash_into(h, obj[key])
    elif isinstance(obj, (tuple, list)):
        h.update(f"({len(obj)};".encode())
        for item in obj:
            _hash_into(h, item)
    else:  # numbers, strings, images: as an array; anything else by its type alone (a repr may hold an address)
        try:
            a = np.asarray(obj)
        except Exception:  # noqa: BLE001 - whatever cannot become an array
            a = None
        if a is not None and a.dtype != object:
            _hash_into(h, a)
        else:
            h.update(f"<{type(obj).__module__}.{type(obj).__qualname__}>;".encode())


def split_digest(task: "Task", samples: int = 16) -> str:
    """A fingerprint of a task's data (12 hex digits of a SHA-1): per split its size and its targets where they can
    be read without the inputs (`split_targets` of tensors, subsets and concatenations, a ``targets()`` method),
    and ``samples`` training examples, inputs and targets, at evenly spaced indices. No validation or test example
    is read.

    The same data split the same way give the same digest; a split made with another seed (other examples in
    training) or other data under the same summary give another, with near certainty. Runs record it in
    config.json, and a resumed run or a control on a run checks it (`dashkit.stages.common.open_run_dir`,
    `dashkit.pipeline.shuffled_control`).
    """
    import hashlib

    h = hashlib.sha1()
    for name in ("train", "val", "test"):
        data = getattr(task, name)
        n = len(data)
        h.update(f"{name}:{n};".encode())
        targets = _targets_if_cheap(data)
        if targets is not None:
            _hash_into(h, targets)
        if name != "train":  # the validation and test splits are read where a stage needs them, not here
            continue
        for i in sorted({round(j * (n - 1) / max(samples - 1, 1)) for j in range(samples)}):
            _hash_into(h, data[i])
    return h.hexdigest()[:12]


def tensor_dataset(x: Union[torch.Tensor, np.ndarray], y: Union[torch.Tensor, np.ndarray]) -> TensorDataset:
    """A split of (input, target) pairs held in memory: every task's splits are made here.

    Args:
        x: (N, C, *spatial) inputs, a tensor or a numpy array (shared, not copied).
        y: (N, ...) targets, likewise.
    """
    return TensorDataset(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in (x, y)))


class ShuffledTargets(Dataset):
    """A split whose targets are shuffled among its examples: item i is (x_i, y[perm[i]]).

    Each input keeps its values and the targets keep their distribution; only the link between the two is gone.

    Args:
        data: the split; its inputs are read unchanged.
        seed: fixes the permutation (``torch.randperm`` from a generator seeded with it).
    """

    def __init__(self, data: Dataset, seed: int):
        self.data = data
        self.y = split_targets(data)
        self.perm = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(int(seed)))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i][0], self.y[self.perm[i]]

    def targets(self) -> torch.Tensor:
        """Every target of the split in item order: (N, ...)."""
        return self.y[self.perm]


def shuffle_targets(task: "Task", seed: int = 0) -> "Task":
    """The task with its training targets shuffled among the training examples: the null control of a search.

    On such a training split no candidate of a search space can fit better than another for a reason in the data,
    so a search without a preference of its own would choose uniformly from its space; what it chooses more often
    than 1/M there is the method's own preference (``benchmarks/null_search.py`` measures it; RESULTS.md, "What the
    search chooses when the targets are shuffled"). The validation and test splits are the task's own, unchanged
    (a network trained on the shuffled split scores about chance on them). An in-memory training split stays a
    ``TensorDataset`` sharing the task's inputs; any other is wrapped in `ShuffledTargets`, with the same
    permutation.

    Args:
        task: any task.
        seed: fixes the permutation.

    Returns:
        A new Task (``dataclasses.replace``; the same name) with ``info["shuffled_targets"] = seed``.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task={task!r} has type {type(task).__name__}; accepted: a dashkit Task")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed={seed!r} has type {type(seed).__name__}; accepted: an int")
    shuffled: Dataset = ShuffledTargets(task.train, int(seed))
    if isinstance(task.train, TensorDataset):
        shuffled = TensorDataset(task.train.tensors[0], shuffled.targets())
    return dataclasses.replace(task, train=shuffled,
                               info={**task.info, "shuffled_targets": int(seed)})


def holdout_indices(n: int, fraction: float, seed: int, labels: Optional[torch.Tensor] = None
                    ) -> Tuple[List[int], List[int]]:
    """A seeded hold-out of about ``fraction`` of ``range(n)``: (held, rest), both sorted and non-empty.

    Without ``labels``: ``round(fraction n)`` indices of a random permutation (at least 1, at most n - 1). With
    ``labels`` (N,) class indices: stratified, ``round(fraction count)`` of every class (at least 1 and at most
    count - 1 of a class with two or more examples; a class of one example stays in ``rest``), so both parts keep
    the classes' proportions. The same (n, fraction, seed, labels) give the same split.

    Raises:
        ValueError: ``n`` < 2, ``fraction`` outside (0, 1), or ``labels`` of another length.
    """
    if n < 2 or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"a hold-out of fraction = {fraction!r} of n = {n} examples: expected n >= 2 and "
                         f"0 < fraction < 1")
    g = torch.Generator().manual_seed(int(seed))
    if labels is None:
        groups = [list(range(n))]
    else:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries; expected n = {n}")
        groups = [torch.nonzero(labels == c).flatten().tolist() for c in torch.unique(labels).tolist()]
    held: List[int] = []
    for members in groups:
        if len(members) < 2:
            continue
        order = [members[i] for i in torch.randperm(len(members), generator=g).tolist()]
        held += order[:min(len(members) - 1, max(1, round(fraction * len(members))))]
    chosen = set(held)
    return sorted(held), [i for i in range(n) if i not in chosen]


def kfold_indices(n: int, k: int, seed: int, labels: Optional[torch.Tensor] = None) -> list:
    """``k`` disjoint folds covering ``range(n)``, drawn from a generator seeded with ``seed``.

    Without ``labels``: a random permutation dealt out in turn (fold sizes differ by at most one). With ``labels``
    (N,) class indices: stratified, each class's examples shuffled and dealt out in turn, one class after another,
    so each fold holds ``floor`` or ``ceil`` of ``count / k`` of every class and the fold sizes still differ by at
    most one. The same (n, k, seed, labels) give the same folds, every time.

    Returns:
        ``k`` sorted lists of indices.

    Raises:
        ValueError: ``k`` < 2 or ``n`` < ``k``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or n < k:
        raise ValueError(f"k = {k!r} folds of n = {n} examples: expected an int with 2 <= k <= n")
    g = torch.Generator().manual_seed(int(seed))
    if labels is None:
        order = torch.randperm(n, generator=g).tolist()
    else:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries; expected n = {n}")
        order = []
        for c in torch.unique(labels).tolist():  # ascending classes: the same order every time
            members = torch.nonzero(labels == c).flatten()
            order += members[torch.randperm(len(members), generator=g)].tolist()
    folds: list = [[] for _ in range(k)]
    for position, index in enumerate(order):
        folds[position % k].append(index)
    return [sorted(f) for f in folds]
