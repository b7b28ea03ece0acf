"""Run configuration as data: one dataclass per stage, three presets, and type-checked overrides.

The dataclass defaults are the budgets published with DASH (the ``paper`` preset, counted in epochs); ``smoke``
(CI) and ``standard`` (a laptop) give each stage a number of optimiser steps instead, so that a budget does not
depend on the dataset's size (``dashkit.budget`` derives the epochs and batch sizes from the data). A run's
configuration is built in three layers::

    preset  ->  the task's own TaskDefaults  ->  the user's overrides

User overrides are flat keys, the same names as command-line ``--set`` keys and notebook parameters: a
stage field is ``<stage>_<field>`` (``search_epochs=3``, ``tune_lrs=(0.1, 0.01)``,
``retrain_backbone={"width": 4}``); run-wide fields keep their own name (``seed``, ``device``). An unknown
key is an error that lists the valid ones.

    >>> cfg = make_config("smoke", search_epochs=3, retrain_backbone={"width": 2})
    >>> RunConfig.from_json(cfg.to_json()) == cfg
    True
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from .augment import check_augment
from .conv_choice import CONV_BACKENDS, SEARCH_BACKENDS
from .dashconv import RELAXATIONS, UNDECIDED_LAYERS

__all__ = ["SearchConfig", "TuneConfig", "RetrainConfig", "RunConfig", "PRESETS", "STAGES", "make_config",
           "setting_names", "parse_setting", "resolve_device", "storage_spec"]

_SCHEMES = ("single_level", "bilevel")
_PRUNERS = ("median", "none")
_UNDECIDED = ("retrain_defaults", "best")
_SMALL_VAL = ("cv", "skip", "tune")


def stage_seed(seed: int, stage: str) -> int:
    """A seed per (run seed, stage): stages draw independent streams, each reproducible on its own."""
    return zlib.crc32(f"{seed}/{stage}".encode())


@dataclass
class SearchConfig:
    """The architecture search: weights and alpha trained together on a supernet."""

    steps: Optional[int] = None  # optimiser steps of the search; None: count in epochs (below), as DASH does
    epochs: int = 100  # DASH: 100 short "epochs" (with steps set, epochs follow from the data: dashkit.budget)
    batch_size: int = 64  # per-task in the reference; 64 is a common value there, not verified for every task
    batches_per_epoch: float = 0.2  # fraction of the training batches in one epoch (DASH: 20%)
    max_batches: Optional[int] = None  # cap on the batches of one epoch, after the fraction; None: no cap
    lr: float = 0.1  # weights' SGD learning rate (DASH: 0.1; dense tasks 0.01)
    arch_lr: float = 0.05  # alpha's SGD learning rate (DASH: 0.05; dense tasks 0.005)
    arch_lr_steps: Optional[int] = None  # a search of fewer steps than this scales alpha's lr up by
    # arch_lr_steps / steps, so that the farthest alpha can move (lr x steps) does not shrink with the budget;
    # None: arch_lr whatever the steps (DASH). `SearchConfig.arch_lr_for` gives the lr a search uses.
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    arch_weight_decay: float = 5e-4  # the reference decays alpha too (a questionable choice, kept as option)
    grad_clip: float = 1.0  # max gradient norm of the weights; 0 turns clipping off
    joint_clip: bool = False  # True: clip alpha's post-processed gradient together with the weights' (one norm, as
    # the reference code does), so alpha's steps shrink while the weights' gradients are large; False: weights only
    warmup: float = 0.0  # fraction of the search's steps in which only the weights train (alpha is frozen and
    # its decision record waits); 0: alpha steps from the first batch (DASH)
    milestones: Tuple[float, ...] = (0.3, 0.6, 0.9)  # fractions of `epochs` where lr *= gamma (DASH 1D: 30/60/90)
    gamma: float = 0.2  # step decay factor, applied to alpha's lr too
    relaxation: str = "gumbel"  # "gumbel": Gumbel-softmax mixing resampled every step; "softmax": plain softmax
    tau: float = 1.0  # temperature of the relaxation
    grad_scale: float = 100.0  # arch-gradient normalisation g / (grad_scale * ||g||) (DASH: 100; CIFAR 5000)
    rf_penalty: float = 1e-5  # added to alpha's gradient per unit of receptive field: a push to small fields
    # (DASH: 1e-5, kept by the paper preset; smoke and standard: 0, RESULTS.md "The receptive-field push")
    init_std: float = 0.01  # candidate weights start as N(0, init_std^2) (DASH: 0.01, which backbones with
    # BatchNorm rescale; a network without normalisation, such as the planted tasks' plain stack, needs more)
    depthwise: bool = True  # search convs with in == out channels depthwise (retrained as full convs)
    backend: str = "auto"  # "fft", "direct", "mixed_results" (DARTS), or "auto": measured per layer, so it may differ
    # between machines and runs; fix it for bit-reproducible resumes
    scheme: str = "single_level"  # "single_level" (DASH) or "bilevel" (first-order DARTS: alpha on val batches)
    max_passes: Optional[float] = None  # at most this many passes over the training split: a search of more steps
    # is cut to ceil(max_passes x batches per pass) (`dashkit.budget.stage_plan`; the steps path only), so a small
    # dataset's supernet does not go through its labels thousands of times; None: the steps as given (DASH)
    arch_holdout: float = 0.0  # bilevel only: > 0 holds this fraction of the training split out (stratified) for
    # alpha's batches, the weights training on the rest, so the validation split stays unseen by the search
    # (DARTS's split of the training data); 0: alpha steps on the validation split's batches
    backbone: Dict[str, Any] = field(default_factory=dict)  # overrides of the searched backbone's kwargs
    undecided: str = "searched"  # what the tuned and retrained network has in a layer whose choice did not pass the
    # decision test (DashConv.decision): "searched" keeps the search's argmax (DASH), "default_kernels" the backbone's
    # own convolution, as the baseline has it. Recorded in the ArchCard's meta, which ArchCard.apply follows. Every
    # preset keeps "searched" (RESULTS.md, "Undecided layers at the default kernels on the offline tasks")

    def __post_init__(self) -> None:
        _positive_int(self, "epochs", "batch_size")
        _steps(self)
        _choice(self, "undecided", UNDECIDED_LAYERS)
        _int_setting(self, "arch_lr_steps", none="arch_lr whatever the steps")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
            raise ValueError(f"search_warmup = {self.warmup!r}: expected a fraction in [0, 1) of the search's steps")
        _fraction(self, "batches_per_epoch")
        _non_negative(self, "lr", "arch_lr", "momentum", "weight_decay", "arch_weight_decay", "grad_clip",
                      "rf_penalty")
        _positive(self, "gamma", "tau", "grad_scale", "init_std")
        _milestones(self)
        _choice(self, "relaxation", RELAXATIONS)
        _choice(self, "scheme", _SCHEMES)
        if isinstance(self.arch_holdout, bool) or not isinstance(self.arch_holdout, (int, float)) or \
                not 0 <= self.arch_holdout < 1:
            raise ValueError(f"search_arch_holdout = {self.arch_holdout!r}: expected a fraction in [0, 1) of the "
                             f"training split")
        if self.arch_holdout > 0 and self.scheme != "bilevel":
            raise ValueError(f"search_arch_holdout = {self.arch_holdout!r} holds training data out for alpha's "
                             f"batches, which only the bilevel scheme takes: set search_scheme='bilevel' (it is "
                             f"{self.scheme!r}) or search_arch_holdout=0")
        _choice(self, "backend", SEARCH_BACKENDS)
        if self.max_passes is not None and (isinstance(self.max_passes, bool) or
                                            not isinstance(self.max_passes, (int, float)) or
                                            not 0 < self.max_passes < float("inf")):
            raise ValueError(f"search_max_passes = {self.max_passes!r}: expected None (the search's steps as given) "
                             f"or a number of passes over the training split > 0")

    def warmup_steps(self, steps: int) -> int:
        """Of a search of ``steps`` optimiser steps, the first this many train the weights only (``warmup``);
        alpha always keeps at least one step."""
        return max(0, min(int(round(self.warmup * int(steps))), int(steps) - 1))

    def arch_lr_for(self, steps: int) -> float:
        """Alpha's learning rate (before the step schedule) for a search of ``steps`` optimiser steps.

        DASH's arch step is normalised per layer, so one step moves alpha by about ``lr / grad_scale`` whatever the
        data say, and the farthest a search can move it grows with lr x steps. With ``arch_lr_steps`` set, a
        search shorter than that gets ``arch_lr * arch_lr_steps / steps``: the same reach as ``arch_lr_steps``
        steps at ``arch_lr``. Longer searches keep ``arch_lr``. Without it (None, DASH), ``arch_lr``.
        """
        if self.arch_lr_steps is None or steps >= self.arch_lr_steps:
            return self.arch_lr
        return self.arch_lr * self.arch_lr_steps / max(int(steps), 1)


@dataclass
class TuneConfig:
    """DASH's hyper-parameter grid on the discretised network, selected on the validation split."""

    enabled: bool = True  # False: retrain with RetrainConfig's own lr / momentum / weight_decay / dropout
    lrs: Tuple[float, ...] = (0.1, 0.01, 0.001)  # tried in this order, one block per lr
    dropouts: Tuple[float, ...] = (0.0, 0.05)
    weight_decays: Tuple[float, ...] = (5e-4, 5e-6)
    momentums: Tuple[float, ...] = (0.9, 0.99)
    steps: Optional[int] = None  # optimiser steps per configuration; None: count in epochs (below)
    epochs: int = 80  # short epochs per configuration
    batch_size: int = 64
    batches_per_epoch: float = 0.2  # DASH uses 1-20% of the batches per tuning epoch, by task
    max_batches: Optional[int] = None  # cap on the batches of one epoch, after the fraction; None: no cap
    val_interval: Optional[int] = None  # a validation pass after every epoch (None), or about once every this many
    # steps, at least VAL_MIN_PASSES times, the last epoch always (`dashkit.budget.val_passes`): a time budget sets
    # it where a validation pass costs far more than a step (a large validation split), so the passes do not eat
    # the stage's time
    lr_block_patience: int = 1  # leave an lr block after this many configs bring no improvement; 0 = never
    pruner: str = "median"  # Optuna MedianPruner on the per-epoch validation metric, or "none"
    storage: Optional[str] = None  # None: in memory; a journal file ("tune.journal" or "journal:PATH"; relative:
    # inside the run dir) or a database URL ("postgresql://...")
    n_trials: Optional[int] = None  # cap on the number of configurations tried; None: the whole grid
    parallel: bool = False  # True: the grid becomes a queue in `storage`, shared with `dashkit tune-worker`
    # processes; every configuration is evaluated once, the choice is the same as a sequential tuning's
    undecided: str = "retrain_defaults"  # when no configuration beats the input-ignoring guess on validation
    # (classification and multi-label tasks), or, cross-validated, when the best does not beat the retrain_* defaults
    # fold by fold beyond two standard errors, their order is noise: "retrain_defaults" retrains with the retrain_*
    # hyper-parameters (DASH's defaults); "best" keeps the best-scoring configuration anyway
    small_val: str = "skip"  # when the validation split is too small to rank configurations (Task.too_small("val")):
    # "skip" retrains with the retrain_* hyper-parameters and says so (its time budget share goes to retraining);
    # "cv" scores each configuration by stratified k-fold cross-validation over train + val (cv_folds folds; k times
    # the tuning's training, which a time budget counts), keeping the defaults unless beaten beyond the folds' noise,
    # and falling back to "skip" when train + val cannot fill the folds; "tune" tunes anyway on the noisy ranking.
    # "skip" is the default: on six UCR datasets 34 of 36 such cross-validated tunings did not beat the defaults
    # beyond their noise, and they took about half of each run (RESULTS.md)
    cv_folds: int = 5  # folds of tune_small_val="cv" (at least 2), stratified by class for classification

    def __post_init__(self) -> None:
        _positive_int(self, "epochs", "batch_size")
        _steps(self)
        _fraction(self, "batches_per_epoch")
        _int_setting(self, "val_interval", none="a validation pass after every epoch")
        for name in ("lrs", "dropouts", "weight_decays", "momentums"):
            values = getattr(self, name)
            if len(values) == 0 or any(v < 0 for v in values):
                raise ValueError(f"tune_{name} = {values!r}: expected a non-empty tuple of numbers >= 0")
        if any(v <= 0 for v in self.lrs):
            raise ValueError(f"tune_lrs = {self.lrs!r}: every learning rate must be > 0")
        if any(v >= 1 for v in self.dropouts):
            raise ValueError(f"tune_dropouts = {self.dropouts!r}: every dropout must be in [0, 1)")
        _int_setting(self, "lr_block_patience", 0)
        _int_setting(self, "n_trials", none="")
        _choice(self, "pruner", _PRUNERS)
        _choice(self, "undecided", _UNDECIDED)
        _choice(self, "small_val", _SMALL_VAL)
        _int_setting(self, "cv_folds", 2)
        kind, target = storage_spec(self.storage)
        if self.parallel and kind == "memory":
            raise ValueError("tune_parallel = True needs tune_storage: a journal file on a folder every worker can "
                             "read (e.g. tune_storage='tune.journal') or a database URL")
        if self.parallel and kind == "url" and target.lower().startswith("sqlite"):
            raise ValueError(f"tune_storage = {self.storage!r}: SQLite cannot be shared by several tuning workers "
                             f"(tune_parallel = True): its file locks fail under concurrent writers; use a journal "
                             f"file (tune_storage='tune.journal') or a server database (postgresql://, mysql://)")

    def n_configs(self) -> int:
        """Configurations a tuning tries at most: the grid's, capped by ``n_trials`` (the lr-block walk may stop
        earlier)."""
        n = len(self.grid())
        return n if self.n_trials is None else min(self.n_trials, n)

    def grid(self) -> list:
        """The configurations in the order they are tried: lr-major, as in DASH."""
        return [dict(lr=lr, dropout=dr, weight_decay=wd, momentum=m)
                for lr in self.lrs for dr in self.dropouts for wd in self.weight_decays for m in self.momentums]


@dataclass
class RetrainConfig:
    """Training of the chosen network from scratch, and of the baseline on the same budget."""

    steps: Optional[int] = None  # optimiser steps (DASH's and the baseline's alike); None: count in epochs (below)
    epochs: int = 200
    batch_size: int = 64
    batches_per_epoch: float = 1.0
    max_batches: Optional[int] = None  # cap on the batches of one epoch, after the fraction; None: no cap
    val_interval: Optional[int] = None  # as tune_val_interval, for every network's retraining alike
    lr: float = 0.1  # used when tuning is off; otherwise the tuned value replaces it
    momentum: float = 0.9  # likewise
    nesterov: bool = True
    weight_decay: float = 5e-4  # likewise
    dropout: float = 0.0  # likewise
    grad_clip: float = 1.0  # 0 turns clipping off
    milestones: Tuple[float, ...] = (0.3, 0.6, 0.8)  # fractions of `epochs` (DASH 2D: 60/120/160 of 200)
    gamma: float = 0.2
    backbone: Dict[str, Any] = field(default_factory=dict)  # overrides of the retrained backbone (e.g. width=4)
    # How the tuned and retrained networks (DASH's and the baseline's alike) convolve: "auto" crops taps that
    # only read padding and measures FFT against direct per layer shape (dashkit.layers.auto_convs); "fft" and
    # "direct" force one; "plain" leaves PyTorch's nn.Conv as it is.
    conv_backend: str = "auto"

    def __post_init__(self) -> None:
        _positive_int(self, "epochs", "batch_size")
        _steps(self)
        _fraction(self, "batches_per_epoch")
        _int_setting(self, "val_interval", none="a validation pass after every epoch")
        _choice(self, "conv_backend", CONV_BACKENDS + ("plain",))
        _non_negative(self, "momentum", "weight_decay", "grad_clip")
        _positive(self, "lr", "gamma")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"retrain_dropout = {self.dropout!r}: expected a number in [0, 1)")
        _milestones(self)


@dataclass
class RunConfig:
    """Everything a run needs besides the task: stage configs, seed, device and the network."""

    search: SearchConfig = field(default_factory=SearchConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    seed: int = 0
    device: str = "auto"  # "auto" -> cuda, then mps, then cpu; or "cpu", "cuda", "cuda:1", "mps"
    num_workers: int = 0  # DataLoader workers; 0 loads in the main process (fastest for small tensors)
    baseline: bool = True  # also train the backbone with its default kernels on the same budget
    random_draws: int = 2  # the random-architecture control: this many architectures drawn uniformly from the
    # search space, retrained with DASH's tuned hyper-parameters on DASH's retraining steps (dashkit.stages.control);
    # 0 turns it off (the smoke preset's value)
    backbone: Optional[str] = None  # a name in dashkit.backbones; None: the task's
    backbone_kwargs: Optional[Dict[str, Any]] = None  # None: the task's
    kernel_sizes: Optional[Tuple[int, ...]] = None  # the search space; None: the task's
    dilations: Optional[Tuple[int, ...]] = None  # None: the task's
    augment: str = "none"  # what every training batch goes through (dashkit.augment): "none", or "slice" (window
    # slicing of series: a random 90% window stretched back to the length); validation and test never are

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers = {self.num_workers!r}: expected an int >= 0")
        if not isinstance(self.random_draws, int) or isinstance(self.random_draws, bool) or self.random_draws < 0:
            raise ValueError(f"random_draws = {self.random_draws!r}: expected an int >= 0 (how many random "
                             f"architectures to retrain beside DASH; 0 turns the control off)")
        resolve_device(self.device, check_available=False)
        check_augment(self.augment)
        for name in ("kernel_sizes", "dilations"):
            values = getattr(self, name)
            if values is not None and (len(values) == 0 or any(v < 1 for v in values)
                                       or len(set(values)) != len(values)):
                raise ValueError(f"{name} = {values!r}: expected None or a non-empty tuple of ints >= 1, "
                                 f"without repeats")
        if self.kernel_sizes is not None and any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes = {self.kernel_sizes!r}: expected odd sizes (a centred 'same' kernel "
                             f"needs an odd size), e.g. (3, 5, 7, 9)")

    # --- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """The inverse of :meth:`to_dict`; values are type-checked, unknown keys rejected."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data = {data!r}: expected a dict as made by RunConfig.to_dict()")
        stage_cls = {"search": SearchConfig, "tune": TuneConfig, "retrain": RetrainConfig}
        kwargs: Dict[str, Any] = {}
        for key, value in data.items():
            if key in stage_cls:
                if not isinstance(value, Mapping):
                    raise TypeError(f"{key} = {value!r}: expected a dict of {key} settings")
                kwargs[key] = _build(stage_cls[key], value, prefix=f"{key}_")
            else:
                kwargs[key] = value
        return _build(cls, kwargs, prefix="", skip=tuple(stage_cls))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    # --- overrides ------------------------------------------------------------------------------------
    def override(self, **settings: Any) -> "RunConfig":
        """A copy with flat settings applied, e.g. ``cfg.override(search_epochs=3, seed=1)``."""
        data = self.to_dict()
        for key, value in settings.items():
            stage, name = _split_key(key)
            hints = _field_types(_STAGE_CLASSES[stage] if stage else RunConfig)
            value = _coerce(key, value, hints[name])
            if stage:
                data[stage][name] = value
            else:
                data[name] = value
        return RunConfig.from_dict(_jsonable(data))


# the stages in the order they run, each with its config class (RunConfig has a field of that class per stage)
_STAGE_CLASSES = {"search": SearchConfig, "tune": TuneConfig, "retrain": RetrainConfig}
STAGES = tuple(_STAGE_CLASSES)

STANDARD_STEPS = {"search": 2000, "tune": 300, "retrain": 2000}  # see the standard preset below

# The presets: overrides of the dataclass defaults, which are the published DASH budgets ("paper").
# smoke and standard count optimiser steps per stage (tune: per configuration; the baseline gets retrain's), so the
# budget does not depend on the dataset's size; epochs follow from the data (dashkit.budget.stage_plan). Their
# epoch fields (epochs, max_batches) are what a stage uses when an override puts it back on the epochs path.
# A preset's "run" entry sets run-wide fields (smoke trains no random-architecture control: CI stays fast).
# smoke and standard search without DASH's receptive-field push (see the standard preset); paper keeps it.
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    # Seconds per offline task on 2 CPU cores: a check that everything runs end to end, not a result.
    "smoke": {
        "search": dict(steps=8, epochs=2, batch_size=16, max_batches=4, milestones=(0.5,), rf_penalty=0.0),
        "tune": dict(lrs=(0.1, 0.01), dropouts=(0.0,), weight_decays=(5e-4,), momentums=(0.9,), steps=4, epochs=1,
                     batch_size=16, max_batches=3, pruner="none"),
        "retrain": dict(steps=12, epochs=2, batch_size=16, max_batches=6, milestones=(0.5,)),
        "run": dict(random_draws=0),
    },
    # About 5 minutes a run on 2 CPU cores for mnist1d and small real datasets of short series (measured: RESULTS.md,
    # "Budgets in steps"), with results worth looking at. Where these steps are forecast to take more than 15% over
    # the 5 minutes (long series, the 2D tasks on a CPU), run() fits the run to them as budget="5m" would, with no
    # stage above these steps (time_cap=True, the default; dashkit.budget.PRESET_SECONDS and CAP_SLACK).
    # Two search settings differ from DASH's here, chosen on validation splits (RESULTS.md, "The receptive-field
    # push"): no receptive-field push (rf_penalty 0; DASH's 1e-5 outweighs the data in the 1D spaces, whose fields
    # reach 271 inputs and more), and a search shorter than 2000 steps (a time budget's) scales alpha's lr up to the
    # reach of 2000 steps (arch_lr_steps). A quarter of the search trains the weights alone before alpha moves
    # (warmup; chosen on the planted tasks and mnist1d's validation split: RESULTS.md, "The search on the planted
    # task" and "A weight warm-up").
    "standard": {
        "search": dict(steps=STANDARD_STEPS["search"], epochs=10, batches_per_epoch=0.5, max_batches=15,
                       milestones=(0.5, 0.8), rf_penalty=0.0, arch_lr_steps=STANDARD_STEPS["search"], warmup=0.25),
        "tune": dict(lrs=(0.1, 0.01), dropouts=(0.0, 0.05), weight_decays=(5e-4,), momentums=(0.9,),
                     steps=STANDARD_STEPS["tune"], epochs=2, max_batches=10),
        "retrain": dict(steps=STANDARD_STEPS["retrain"], epochs=10, max_batches=40, milestones=(0.5, 0.75)),
    },
    "paper": {},
}


def setting_names() -> list:
    """Every valid flat setting name: ``seed``, ``device``, ..., ``search_epochs``, ``tune_lrs``, ..."""
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _STAGE_CLASSES]
    for stage, klass in _STAGE_CLASSES.items():
        names += [f"{stage}_{f.name}" for f in dataclasses.fields(klass)]
    return names


def make_config(preset: str = "smoke", task_defaults: Any = None, **overrides: Any) -> RunConfig:
    """Build a RunConfig: preset, then a task's ``TaskDefaults``, then flat user overrides.

    Args:
        preset: "smoke" (seconds: a check that everything runs; no random-architecture control,
            ``random_draws=0``), "standard" (minutes: a result) or "paper" (DASH's published epochs); both of these
            retrain ``random_draws=2`` random architectures beside DASH.
        task_defaults: a ``dashkit.tasks.TaskDefaults`` or None; its ``search`` / ``tune`` / ``retrain`` dicts
            (stage field names) apply on top of the preset, and its backbone and search space fill ``backbone``,
            ``backbone_kwargs``, ``kernel_sizes`` and ``dilations``.
        **overrides: flat settings (see :func:`setting_names`). A stage's ``epochs``, ``batches_per_epoch`` or
            ``max_batches`` given without its ``steps`` counts that stage in epochs (``steps=None``), as DASH does:
            ``make_config("standard", search_epochs=3)`` searches for 3 epochs, not for the preset's steps.
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"preset = {preset!r}: expected one of {', '.join(PRESETS)}")
    layers = [PRESETS[preset]]
    if task_defaults is not None:
        layers.append({stage: dict(getattr(task_defaults, stage, None) or {}) for stage in STAGES})
    data = RunConfig().to_dict()
    for layer in layers:
        for stage, values in layer.items():
            if stage == "run":  # a preset's run-wide fields
                data.update(values)
                continue
            for name, value in values.items():
                key = f"{stage}_{name}"
                _split_key(key)  # a task default with a misspelled name is an error, too
                data[stage][name] = value
    if task_defaults is not None:  # the network, so that config.json alone describes the run
        data["backbone"] = task_defaults.backbone
        data["backbone_kwargs"] = dict(task_defaults.backbone_kwargs)
        data["kernel_sizes"] = list(task_defaults.kernel_sizes)
        data["dilations"] = list(task_defaults.dilations)
    for stage in STAGES:  # an epoch count given without steps means: count this stage in epochs
        if f"{stage}_steps" not in overrides and any(f"{stage}_{name}" in overrides for name in _EPOCH_FIELDS):
            data[stage]["steps"] = None
    cfg = RunConfig.from_dict(_jsonable(data))
    return cfg.override(**overrides) if overrides else cfg


_EPOCH_FIELDS = ("epochs", "batches_per_epoch", "max_batches")


def parse_setting(text: str) -> Tuple[str, Any]:
    """Parse ``"key=value"`` from the command line into a typed (key, value).

    Values are read by the setting's type: ints and floats as numbers, bools from true/false/1/0/yes/no,
    tuples as comma-separated lists (``0.1,0.01``) or JSON lists, dicts as JSON (``{"width": 4}``), and
    ``none``/``null`` for an optional setting.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"setting {text!r}: expected KEY=VALUE, e.g. search_epochs=3")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    stage, name = _split_key(key)
    tp = _field_types(_STAGE_CLASSES[stage] if stage else RunConfig)[name]
    return key, _coerce(key, _parse_text(key, raw, tp), tp)


def storage_spec(spec: Optional[str]) -> Tuple[str, str]:
    """What a ``tune_storage`` value names: ("memory", ""), ("journal", path) or ("url", database URL).

    A value with ``://`` is a database URL; ``journal:PATH`` or a bare path is an Optuna journal file.
    """
    if spec is None:
        return "memory", ""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"tune_storage = {spec!r}: expected None, a journal file path or a database URL")
    if "://" in spec:
        return "url", spec
    path = spec[len("journal:"):] if spec.startswith("journal:") else spec
    if not path.strip():
        raise ValueError(f"tune_storage = {spec!r}: the journal file path is empty; e.g. 'journal:tune.journal'")
    return "journal", path


def resolve_device(device: Any = "auto", check_available: bool = True) -> torch.device:
    """The torch.device for a config value: "auto" picks cuda, then mps, then cpu."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device = {device!r}: expected a str such as 'auto', 'cpu', 'cuda', 'cuda:0', 'mps'")
    kind = device.split(":")[0]
    if kind not in ("auto", "cpu", "cuda", "mps") or (":" in device and kind != "cuda"):
        raise ValueError(f"device = {device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if check_available and kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {device!r}: CUDA is not available on this machine; use 'auto' or 'cpu'")
    if check_available and kind == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                                  and torch.backends.mps.is_available()):
        raise ValueError(f"device = {device!r}: MPS is not available on this machine; use 'auto' or 'cpu'")
    return torch.device(device)


# --- helpers ----------------------------------------------------------------------------------------------
def _split_key(key: str) -> Tuple[Optional[str], str]:
    """Split a flat setting into (stage or None, field); an unknown key lists the valid ones."""
    valid = setting_names()
    if not isinstance(key, str) or key not in valid:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown setting {key!r}{hint}; valid settings: {', '.join(valid)}")
    for stage in _STAGE_CLASSES:
        if key.startswith(stage + "_"):
            return stage, key[len(stage) + 1:]
    return None, key


def _field_types(klass: type) -> Dict[str, Any]:
    return typing.get_type_hints(klass)


def _build(klass: type, values: Mapping[str, Any], prefix: str, skip: Tuple[str, ...] = ()) -> Any:
    hints = _field_types(klass)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            _split_key(prefix + str(key))  # raises with the list of valid names
        kwargs[key] = value if key in skip else _coerce(prefix + key, value, hints[key])
    return klass(**kwargs)


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; convert lists to tuples and ints to floats."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(name, value, inner)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"{name} = {value!r}: expected True or False")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"{name} = {value!r}: expected an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{name} = {value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"{name} = {value!r}: expected a str")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} = {value!r}: expected a tuple (or list) of {args[0].__name__}")
        return tuple(_coerce(name, v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"{name} = {value!r}: expected a dict with str keys")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, tp):
        return value
    raise TypeError(f"{name} = {value!r}: unsupported value for a setting of type {tp}")


def _parse_text(key: str, raw: str, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if raw.lower() in ("none", "null", ""):
            return None
        return _parse_text(key, raw, [a for a in args if a is not type(None)][0])
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str:
            return raw
        if origin is tuple:
            items = json.loads(raw) if raw.startswith("[") else [s for s in raw.split(",") if s.strip()]
            return tuple(_parse_text(key, str(s).strip(), args[0]) if isinstance(s, str) else s for s in items)
        if origin is dict or tp is dict:
            return json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        pass
    raise ValueError(f"setting {key}={raw!r}: cannot read the value as {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return f"a comma-separated list of {args[0].__name__}"
    if origin is dict or tp is dict:
        return 'a JSON object such as {"width": 4}'
    return getattr(tp, "__name__", str(tp))


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data))


def _stage_name(obj: Any) -> str:
    return type(obj).__name__.replace("Config", "").lower()


def _int_setting(obj: Any, name: str, low: int = 1, none: Optional[str] = None) -> None:
    """An integer setting >= ``low`` (bool refused); ``none`` not None: None is accepted too, and means that."""
    value = getattr(obj, name)
    if value is None and none is not None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        accepted = "" if none is None else ("None or " if not none else f"None ({none}) or ")
        raise ValueError(f"{_stage_name(obj)}_{name} = {value!r}: expected {accepted}an int >= {low}")


def _positive_int(obj: Any, *names: str) -> None:
    for name in names:
        _int_setting(obj, name)


def _steps(obj: Any) -> None:
    _int_setting(obj, "steps", none="count in epochs")


def _fraction(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not 0 < value <= 1:
        raise ValueError(f"{_stage_name(obj)}_{name} = {value!r}: expected a fraction in (0, 1]")
    _int_setting(obj, "max_batches", none="")


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 0:
            raise ValueError(f"{_stage_name(obj)}_{name} = {value!r}: expected a number >= 0")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ValueError(f"{_stage_name(obj)}_{name} = {value!r}: expected a number > 0")


def _milestones(obj: Any) -> None:
    ms = obj.milestones
    if any(not 0 < m <= 1 for m in ms) or list(ms) != sorted(ms):
        raise ValueError(f"{_stage_name(obj)}_milestones = {ms!r}: expected increasing fractions of the "
                         f"epochs in (0, 1], e.g. (0.3, 0.6, 0.8)")


def _choice(obj: Any, name: str, choices: Tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{_stage_name(obj)}_{name} = {value!r}: expected one of {', '.join(choices)}")
