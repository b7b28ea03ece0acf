"""The command line: ``python -m dashkit`` (or ``dashkit``) ``run | tune-worker | tasks | show | shuffled-control |
settings | bench``.

    python -m dashkit run mnist1d --out runs/m1                      # the standard preset (steps per stage)
    python -m dashkit run mnist1d --budget 5m --out runs/m2          # five minutes, shared among the stages
    python -m dashkit run mnist1d --preset smoke --set search_steps=50 retrain_backbone='{"width": 2}'
    python -m dashkit tasks
    python -m dashkit show runs/m1
    python -m dashkit shuffled-control runs/m1                        # the search again on shuffled targets
    python -m dashkit settings --preset standard

Scaling out: ``torchrun --nproc_per_node 2 -m dashkit run mnist1d ...`` trains every stage data-parallel (one
process per GPU, or gloo on CPU). Tuning in parallel: start the run with
``--set tune_parallel=true tune_storage=tune.journal``, then, in as many other shells or jobs as you like
(sharing the run's file system), ``python -m dashkit tune-worker runs/m1``.

``--import MODULE_OR_FILE`` imports a module first (e.g. one that registers your own task with
``dashkit.tasks.register``). Bad input is reported as one line on stderr with exit status 2 (set
``DASHKIT_DEBUG=1`` for the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main"]


class _InputError(Exception):
    """A problem with what the user asked for (reported as one line, exit status 2)."""


def _import(spec: str) -> None:
    """Import a module by dotted name or a Python file by path."""
    if spec.endswith(".py") or Path(spec).is_file():
        path = Path(spec).resolve()
        if not path.is_file():
            raise _InputError(f"--import {spec!r}: no such file")
        name = f"dashkit_user_{path.stem}"
        if getattr(sys.modules.get(name), "__file__", None) == str(path):
            return  # imported already (main() called twice in one process): do not register its tasks again
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise _InputError(f"--import {spec!r}: cannot import this file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise _InputError(f"--import {spec!r}: {e}") from e


def _parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    parser = argparse.ArgumentParser(prog="dashkit", description="DASH: search the kernel size and dilation of "
                                     "every convolution of a CNN, then tune, retrain and test it beside the "
                                     "default-kernel baseline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add_import(p: argparse.ArgumentParser) -> None:
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                       help="import this module or .py file first (e.g. to register your own task)")

    p_run = sub.add_parser("run", help="search, tune, retrain and test on a task, with the baseline")
    p_run.add_argument("task", help="a registered task name (see `dashkit tasks`)")
    p_run.add_argument("--preset", default="standard", choices=list(PRESETS),
                       help="budget preset: smoke (seconds, a check), standard (minutes, a result; the default) or "
                            "paper (DASH's epochs)")
    p_run.add_argument("--budget", default=None, metavar="TIME",
                       help="a wall-time budget for the whole run, e.g. 90s, 5m, 1h or seconds: the step cost of each "
                            "network is measured and the time shared among the stages")
    p_run.add_argument("--no-time-cap", dest="time_cap", action="store_false",
                       help="keep the standard preset's steps where they are forecast to take well over its 5 minutes "
                            "on this machine (by default such a run is fit to the 5 minutes, as --budget 5m fits it)")
    p_run.add_argument("--out", default=None, help="run directory (default runs/<task>-<preset>-seed<seed>)")
    p_run.add_argument("--resume", action="store_true", help="continue the run already in --out")
    p_run.add_argument("--overwrite", action="store_true", help="delete the run already in --out and start afresh")
    p_run.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    p_run.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p_run.add_argument("--set", dest="settings", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. search_epochs=3 tune_lrs=0.1,0.01 (see `dashkit settings`)")
    p_run.add_argument("--no-figures", dest="figures", action="store_false", help="do not save PNG figures")
    add_import(p_run)

    p_work = sub.add_parser("tune-worker", help="help a run with tune_parallel=true evaluate its tuning grid")
    p_work.add_argument("run_dir", help="the run's directory (its config says what to train)")
    p_work.add_argument("--task", default=None, help="the task's registered name (default: the run's)")
    p_work.add_argument("--device", default=None, help="this worker's device (default: the run's)")
    p_work.add_argument("--wait", type=float, default=3600.0, metavar="SECONDS",
                        help="how long to wait for the run's tuning queue (default 3600)")
    add_import(p_work)

    p_tasks = sub.add_parser("tasks", help="list the registered tasks")
    add_import(p_tasks)

    p_show = sub.add_parser("show", help="summarise a run directory: metrics, architecture, stage times")
    p_show.add_argument("run_dir")

    p_ctl = sub.add_parser("shuffled-control", help="the run's search again with its training targets shuffled: "
                           "which of its choices are the data's, which the method's")
    p_ctl.add_argument("run_dir", help="a run directory whose search finished")
    p_ctl.add_argument("--task", default=None, help="the task's registered name (default: the run's)")
    p_ctl.add_argument("--device", default=None, help="where the control searches (default: the run's device)")
    add_import(p_ctl)

    p_set = sub.add_parser("settings", help="list every setting with its value in a preset")
    p_set.add_argument("--preset", default="standard", choices=list(PRESETS))

    sub.add_parser("bench", help="speed benchmarks (arguments go to dashkit.bench)", add_help=False)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import parse_setting
    from .pipeline import run

    overrides = dict(parse_setting(text) for text in args.settings)
    for key in ("seed", "device"):
        if key in overrides:
            raise _InputError(f"--set {key}=...: use --{key} instead")
    result = run(args.task, preset=args.preset, out=args.out, seed=args.seed, device=args.device,
                 resume=args.resume, overwrite=args.overwrite, figures=args.figures, budget=args.budget,
                 time_cap=args.time_cap, **overrides)
    from . import distributed

    if distributed.is_main():
        print()
        print(result.summary())
    return 0


def _cmd_tune_worker(args: argparse.Namespace) -> int:
    from . import distributed
    from .pipeline import tune_worker

    if args.wait < 0:
        raise _InputError(f"--wait {args.wait!r}: expected a number of seconds >= 0")
    count = tune_worker(args.run_dir, task=args.task, device=args.device, wait=args.wait)
    if distributed.is_main():
        print(f"tune-worker: evaluated {count} configuration(s) for {args.run_dir}")
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import TASKS

    names = TASKS.names()
    width = max((len(n) for n in names), default=4)
    for name in names:
        doc = (TASKS.constructor(name).__doc__ or "").strip().splitlines()
        print(f"{name:<{width}}  {doc[0].strip() if doc else ''}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(show(args.run_dir))
    return 0


def show(run_dir: Any) -> str:
    """A text summary of a run directory, finished or not."""
    from .rundir import RunDir

    rd = RunDir(run_dir)
    if not rd.exists(RunDir.CONFIG):
        raise _InputError(f"{str(rd.path)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    meta = rd.read_json(RunDir.CONFIG)
    cfg = meta.get("config", {})
    lines = [f"run {rd.path}", f"  task    {meta.get('task_summary') or meta.get('task')}",
             f"  preset  {meta.get('preset')}, seed {cfg.get('seed')}, backbone {cfg.get('backbone')}"]
    if cfg.get("augment", "none") != "none":
        lines[-1] += f", training batches augmented: {cfg['augment']!r} (dashkit.augment)"
    if meta.get("plan"):
        from .budget import format_plan

        lines.append("plan (optimiser steps per stage on this task's data):")
        lines.append(format_plan(meta["plan"], meta.get("budget")))
    if rd.exists("environment.json"):
        env = rd.read_json("environment.json")
        threads = f", {env['threads']} torch threads of {env.get('cpus')} CPUs" if env.get("threads") else ""
        lines.append(f"  device  {env.get('device')}{threads}, torch {env.get('torch')}, dashkit {env.get('dashkit')}")
    draws = cfg.get("random_draws", 0) if isinstance(cfg.get("random_draws", 0), int) else 0
    order = ("search", "tune", "retrain", "baseline_tune", "baseline_retrain",
             *(f"random_{i}_retrain" for i in range(draws)))
    done = rd.done_stages()
    lines.append("stages:")
    for stage in order:
        if stage in done:
            lines.append(f"  {stage:<17} done in {float(rd.done_info(stage).get('seconds', float('nan'))):8.1f} s"
                         + (f"   ({stage[:-len('_retrain')]}: a random architecture of the space, DASH's "
                            f"hyper-parameters)" if stage.startswith("random_") else ""))
        elif rd.has_checkpoint(stage):
            epoch = rd.read_json(f"checkpoints/{stage}.json").get("epoch", -1) + 1
            lines.append(f"  {stage:<17} stopped after epoch {epoch} (resume with --resume)")
        else:
            lines.append(f"  {stage:<17} not run")
    for stage in ("tune", "baseline_tune"):
        if stage in done and rd.exists(f"{stage}.json"):
            t = rd.read_json(f"{stage}.json")
            if t.get("skipped"):
                lines.append(t["skipped"])
                continue
            line = f"{stage}: chose {t['best']}, validation {t['metric']} {t['best_val']:.4f}"
            if t.get("best_trial") not in (None, t["best"]):
                line = (f"{stage}: chose {t['best']}; the best trial, {t['best_trial']}, scored {t['metric']} "
                        f"{t['best_val']:.4f}")
            if t.get("chance_val") is not None:
                line += f" (input-ignoring guess {t['chance_val']:.4f}"
                line += ")" if t.get("decided", True) else "; undecided: no configuration beat it)"
            vs = t.get("vs_defaults")
            if vs:
                line += (f"; {'beat' if vs['beats_defaults'] else 'within the noise of'} the retrain defaults: "
                         f"{vs['gain']:.3g} +- {vs['se']:.3g} over {vs['folds']} folds")
            lines.append(line)
    if rd.exists("metrics.json"):
        metrics = rd.read_json("metrics.json")
        lines.append(f"test {metrics.get('metric')} (lower is better), once over the whole test split:")
        for model in ("dash", "baseline"):
            if model in metrics:
                m = metrics[model]
                lines.append(f"  {model:<9} {m['test']:10.4f}   validation {m['val']:.4f} at epoch {m['best_epoch']}"
                             f"   {m['hparams']}")
        if isinstance(metrics.get("random"), dict):
            from .stages.control import random_line

            r = metrics["random"]
            lines.append(f"  {'random':<9} {r['test']:10.4f}   validation {r['val']:.4f} (means)   {random_line(r)}")
        if all(isinstance(metrics.get(m), dict) for m in ("dash", "baseline")):
            from .pipeline import best_network

            best = best_network({m: metrics[m]["val"] for m in ("dash", "baseline")})
            lines.append(f"  chosen on validation: {'DASH' if best == 'dash' else 'the baseline'} (the lower "
                         f"validation value; DASH on a tie): which='best' in predict and load_model")
    if rd.exists("archcard.json"):
        from .supernet import ArchCard

        card = ArchCard.load(rd.file("archcard.json"))
        lines.append(f"architecture ({len(card.layers)} searched layers):")
        lines += ["  " + row for row in card.summary().splitlines()]
    if rd.exists("shuffled_control.json"):
        from .stages.shuffled import ShuffledControl

        control = ShuffledControl.from_dict(rd.read_json("shuffled_control.json"))
        lines.append("shuffled-target control (the same search, the training targets shuffled):")
        lines.append("  " + control.verdict())
    figures = sorted((rd.path / "figures").glob("*.png")) if (rd.path / "figures").is_dir() else []
    if figures:
        lines.append("figures: " + ", ".join(str(f) for f in figures))
    return "\n".join(lines)


def _cmd_shuffled_control(args: argparse.Namespace) -> int:
    from . import distributed
    from .pipeline import shuffled_control

    report = shuffled_control(args.run_dir, task=args.task, device=args.device)
    if distributed.is_main():
        print(report.summary())
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    from .config import make_config, setting_names

    cfg = make_config(args.preset).to_dict()
    for key in setting_names():
        stage, _, name = key.partition("_")
        value = cfg[stage][name] if stage in ("search", "tune", "retrain") else cfg[key]
        print(f"{key} = {value!r}")
    return 0


def _bench(argv: Sequence[str]) -> int:
    if importlib.util.find_spec("dashkit.bench") is None:
        raise _InputError("the bench command needs dashkit.bench, which this installation does not have")
    bench = importlib.import_module("dashkit.bench")
    return int(bench.main(list(argv)) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed run, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":
            return _bench(argv[1:])
        args = _parser().parse_args(argv)  # argparse itself exits with status 2 on bad flags
        for spec in getattr(args, "imports", []):
            _import(spec)
        command = {"run": _cmd_run, "tune-worker": _cmd_tune_worker, "tasks": _cmd_tasks, "show": _cmd_show,
                   "shuffled-control": _cmd_shuffled_control, "settings": _cmd_settings}
        return command[args.command](args)
    except (_InputError, ValueError, TypeError, FileNotFoundError) as e:
        if os.environ.get("DASHKIT_DEBUG"):  # the traceback, for bug reports
            raise
        print(f"dashkit: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # NonFiniteLossError, or a metric that is not finite
        print(f"dashkit: run stopped: {e}", file=sys.stderr)
        return 1
    except TimeoutError as e:  # a tune-worker that found no queue
        print(f"dashkit: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dashkit: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    # only when torch.distributed was used: importing it costs time a plain command need not spend
    if "torch.distributed" in sys.modules:
        from . import distributed

        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
