"""DASH's stages, each in its own module; `dashkit.pipeline` conducts them.

==================  ================================================================================
``common``          `StageContext`, the task / config / run directory checks, seeds, progress
``models``          ``build_backbone`` (searched as a supernet), ``build_model`` (tuned, retrained)
``training``        loaders, SGD and its schedule, `train_step`, ``evaluate``
``search``          `search_step` (one DASH step) and the ``search`` stage
``trials``          one tuning trial and its Optuna study
``tune``            the ``tune`` stage: DASH's grid, walked lr block by lr block
``queue``           the tuning queue of ``tune_parallel=True`` and ``tune_worker``
``retrain``         the ``retrain`` stage and the ``baseline``
``control``         the random-architecture control: architectures drawn uniformly from the space, retrained
``shuffled``        the shuffled-target control: the run's search again on shuffled training targets, compared
``costs``           ``measure_costs``: one step of each network, timed, for a time budget (`dashkit.budget`)
==================  ================================================================================

The stage functions keep their modules' names (``dashkit.stages.search.search``); ``dashkit.pipeline.search``
etc. are the same functions.
"""
from .common import StageContext
from .search import search_step
from .training import NonFiniteLossError, evaluate, train_step
from .tune import SmallValidationWarning, TuningUndecidedWarning, tuning_decided

__all__ = ["StageContext", "search_step", "train_step", "evaluate", "NonFiniteLossError", "TuningUndecidedWarning",
           "SmallValidationWarning", "tuning_decided"]
