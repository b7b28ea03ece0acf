"""The tuning queue (``tune_parallel=True``): the grid in a shared Optuna study, emptied by the run and workers.

The grid is put in the shared study as WAITING trials (Optuna's enqueue_trial); every process takes one with
study.ask(), which hands each waiting trial to exactly one process (the storage refuses a second RUNNING
transition). A process records itself in the trial, so that the run can queue again the trial of a worker that
was killed on this machine. ``python -m dashkit tune-worker RUN_DIR`` runs `tune_worker`.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from .. import distributed
from ..budget import stage_plan
from ..config import RunConfig, TuneConfig, storage_spec
from ..rundir import PathLike, RunDir
from .common import StageContext, progress_bar, read_run, stage_device
from .trials import grid_space, journal_path, pruner, storage, study_name, train_trial, trial_key

if TYPE_CHECKING:
    import optuna

    from ..tasks.base import Task

__all__ = ["open_queue", "work_through_queue", "queue_results", "tune_worker"]

_QUEUE_ATTR, _GRID_ATTR, _WORKER_ATTR, _RESULT_ATTR = "dashkit_queue", "dashkit_grid", "dashkit_worker", \
    "dashkit_result"
_TOKEN = uuid.uuid4().hex[:12]  # tells this process from an earlier one that had the same pid


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def _worker_gone(worker: Optional[str]) -> bool:
    """Whether the process that holds a trial is known to be dead (only a process on this machine can be)."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # a killed child that its parent has not reaped yet is a zombie: it runs nothing
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def open_queue(task: "Task", cfg: RunConfig, rd: RunDir, stage: str) -> "optuna.Study":
    """The run's shared study, with every grid configuration queued once (rank 0 of the run only)."""
    import optuna

    tc = cfg.tune
    grid = tc.grid()
    study = optuna.create_study(storage=storage(tc.storage, rd), study_name=study_name(task, cfg, stage),
                                sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
                                pruner=pruner(tc, stage_plan(task, cfg, "tune").epochs),
                                direction="minimize", load_if_exists=True)
    if study.user_attrs.get(_QUEUE_ATTR) != len(grid):  # queued before an interruption: do not queue twice
        queued = {t.user_attrs.get(_GRID_ATTR) for t in study.get_trials(deepcopy=False)}
        for i, params in enumerate(grid):
            if i not in queued:
                study.enqueue_trial(params, user_attrs={_GRID_ATTR: i})
        study.set_user_attr(_QUEUE_ATTR, len(grid))  # workers start once they see this
    return study


def _wait_for_queue(task: "Task", cfg: RunConfig, rd: RunDir, stage: str, deadline: float, poll: float
                    ) -> Optional["optuna.Study"]:
    """A worker's view of the run's study once its queue is filled; None when the stage finished meanwhile."""
    import optuna

    tc = cfg.tune
    kind, target = storage_spec(tc.storage)
    name = study_name(task, cfg, stage)
    store = None
    while True:
        if rd.is_done(stage):
            return None
        if store is None and (kind != "journal" or journal_path(target, rd).is_file()):
            store = storage(tc.storage, rd)  # a worker never creates the run's journal: the run does
        try:
            if store is not None:
                study = optuna.load_study(study_name=name, storage=store,
                                          sampler=optuna.samplers.RandomSampler(),
                                          pruner=pruner(tc, stage_plan(task, cfg, "tune").epochs))
                if study.user_attrs.get(_QUEUE_ATTR) == len(tc.grid()):
                    return study
        except KeyError:  # the run has not created the study yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"tune-worker: no tuning queue {name!r} appeared in {str(rd.path)!r} in time; is "
                               f"the run started (with tune_parallel=true)? Use --wait SECONDS to wait longer")
        time.sleep(poll)


def _pop(study: "optuna.Study", grid: List[Dict[str, float]]) -> Tuple[Any, Optional[int]]:
    """The next queued trial and its grid index, or (None, None) when the queue is empty."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None, None
    trial = study.ask()
    index = trial.user_attrs.get(_GRID_ATTR)
    if index is None:  # another process took the last queued trial between the look and the ask
        study.tell(trial, state=TrialState.FAIL)
        return None, None
    trial.set_user_attr(_WORKER_ATTR, _worker_id())
    return trial, int(index)


def work_through_queue(study: Optional["optuna.Study"], ctx: StageContext, wait_for_others: bool,
                       poll: float = 0.5) -> int:
    """Evaluate queued configurations until the queue is empty; returns how many this process evaluated.

    With ``wait_for_others`` (the run itself) it then waits until every trial has finished, queueing again those
    whose worker died on this machine, and evaluates them too. `study` is None on the ranks > 0 of a torchrun
    launch.
    """
    tc = ctx.cfg.tune
    grid, space = tc.grid(), grid_space(tc)
    bar = progress_bar(total=len(grid), desc=f"{ctx.stage} (queue)")
    count = 0
    while True:
        trial, info = None, None
        if distributed.is_main():
            trial, index = _pop(study, grid)
            info = [0.0, 0.0] if trial is None else [1.0, float(index)]
        have, index_f = distributed.broadcast_floats(info, 2)
        if have:
            params = grid[int(index_f)]
            if trial is not None:  # records the parameters in the study (they are fixed by the queue)
                params = {k: trial.suggest_categorical(k, space[k]) for k in params}
            train_trial(study, trial, params, ctx)
            count += 1
            bar.update(1)
            continue
        more = _await_others(study, grid, poll) if wait_for_others and distributed.is_main() else False
        if not distributed.main_decides(more):
            bar.close()
            return count


def _await_others(study: "optuna.Study", grid: List[Dict[str, float]], poll: float) -> bool:
    """Wait until no trial is running; True as soon as there is queued work again (a dead worker's trial)."""
    from optuna.trial import TrialState

    while True:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return False
        stale = [t for t in running if _worker_gone(t.user_attrs.get(_WORKER_ATTR))
                 or (_WORKER_ATTR not in t.user_attrs and t.datetime_start is not None
                     and time.time() - t.datetime_start.timestamp() > 60)]
        for t in stale:  # the trial stays FAIL without a result mark; a fresh copy goes back in the queue
            study.tell(t.number, state=TrialState.FAIL)
            index = t.user_attrs.get(_GRID_ATTR)
            if index is not None:
                study.enqueue_trial(grid[int(index)], user_attrs={_GRID_ATTR: int(index)})
        if stale:
            return True
        time.sleep(poll)


def queue_results(study: "optuna.Study", tc: TuneConfig) -> Dict[Tuple, Tuple]:
    """{key: (state, value)} of every configuration a process evaluated to the end."""
    grid = tc.grid()
    out: Dict[Tuple, Tuple] = {}
    for t in study.get_trials(deepcopy=False):
        index = t.user_attrs.get(_GRID_ATTR)
        if index is not None and _RESULT_ATTR in t.user_attrs and t.state.is_finished():
            out[trial_key(grid[int(index)])] = (t.state, t.value)
    return out


def tune_worker(run_dir: PathLike, task: Union["Task", str, None] = None, device: Optional[str] = None,
                wait: float = 3600.0, poll: float = 0.5) -> int:
    """Help a run empty its tuning queue: evaluate queued configurations of its shared Optuna study.

    The run must have ``tune_parallel=True`` and a ``tune_storage`` that this process can reach (a journal file
    on a shared file system, or a database URL). The worker waits for the run to queue its grid, evaluates
    configurations until the queue is empty (DASH's, then the baseline's), and writes nothing in the run
    directory: results go to the study, and the run makes the choice and writes the files.

    Args:
        run_dir: the run's directory (its config.json says what to train).
        task: the Task, or its registered name; default the name in config.json.
        device: overrides the run's device for this worker ("cpu", "cuda", ...).
        wait: seconds to wait for the run (its folder, then its queue) before giving up.
        poll: seconds between looks at the study while waiting.

    Returns:
        The number of configurations this worker evaluated.
    """
    from ..supernet import ArchCard

    rd = RunDir(run_dir, writable=False)
    deadline = time.monotonic() + wait
    # a worker may start before its run: wait for the run's folder to appear (a folder of something else is an error)
    while not rd.exists(RunDir.CONFIG):
        foreign = rd.path.is_dir() and any(not p.name.startswith(".") for p in rd.path.iterdir())  # not a temp file
        if foreign or time.monotonic() > deadline:
            raise FileNotFoundError(f"run_dir = {str(rd.path)!r} is not a dashkit run directory (no "
                                    f"{RunDir.CONFIG}); start the run first, or give its folder")
        time.sleep(poll)
    _, cfg, task = read_run(rd, task)
    if not (cfg.tune.enabled and cfg.tune.parallel):
        raise ValueError(f"the run in {str(rd.path)!r} has tune_enabled = {cfg.tune.enabled!r} and tune_parallel = "
                         f"{cfg.tune.parallel!r}: it has no tuning queue; start it with --set tune_parallel=true "
                         f"tune_storage=tune.journal")
    if device is not None:
        cfg = cfg.override(device=device)
    dev = stage_device(cfg)
    stages = [("dash", "tune")] + ([("baseline", "baseline_tune")] if cfg.baseline else [])
    count = 0
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for name, stage in stages:
            study = _wait_for_queue(task, cfg, rd, stage, deadline, poll) if distributed.is_main() else None
            if not distributed.main_decides(study is not None):
                continue  # the run finished this stage without us
            card = ArchCard.load(rd.file("archcard.json")) if name == "dash" else None
            init = rd.load_weights(f"init_{name}.safetensors")  # written by the run before it filled the queue
            ctx = StageContext(task, cfg, rd, dev, stage, card, init)
            count += work_through_queue(study, ctx, wait_for_others=False, poll=poll)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return count
