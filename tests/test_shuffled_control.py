"""The shuffled-target control of a run's search (`dashkit.stages.shuffled`, `dashkit.pipeline.shuffled_control`,
``python -m dashkit shuffled-control``)."""
import json
import math

import pytest

import dashkit
from dashkit import pipeline, tasks
from dashkit.__main__ import main, show
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.space import SearchSpace
from dashkit.stages.shuffled import CONTROL_DIR, PERMUTATION_SEED_OFFSET, REPORT_FILE, ShuffledControl, \
    binomial_tail, compare_with_control
from dashkit.supernet import ArchCard, LayerChoice

pytestmark = pytest.mark.usefixtures("private_data_dir")  # the generated planted data in a fresh cache (conftest)

SPACE = SearchSpace((3, 7, 11, 15, 19), (1, 3, 7, 15), dims=1)  # M = 20


def card_of(pairs, zs, space=SPACE, names=None):
    names = names or [f"blocks.{i}.conv" for i in range(len(pairs))]
    return ArchCard(space=space, meta={"passes": 1000.0},
                    layers=[LayerChoice(name=n, k=k, d=d, alpha=[0.0] * len(space), in_channels=4, out_channels=4,
                                        z=z, decided=None if z is None else z >= 3.0)
                            for n, (k, d), z in zip(names, pairs, zs)])


def test_binomial_tail_matches_the_sum_of_the_probabilities_in_float64():
    for n, p in ((9, 1 / 20), (27, 1 / 16), (3, 1 / 9)):
        pmf = [math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(n + 1)]
        assert math.isclose(sum(pmf), 1.0, rel_tol=1e-12)
        for k in range(n + 1):
            assert math.isclose(binomial_tail(k, n, p), sum(pmf[k:]), rel_tol=1e-12, abs_tol=1e-300)
    assert binomial_tail(0, 5, 0.3) == 1.0 and binomial_tail(6, 5, 0.3) == 0.0
    assert math.isclose(binomial_tail(9, 9, 1 / 20), 20.0 ** -9, rel_tol=1e-12)
    with pytest.raises(ValueError, match="p = 1.5"):
        binomial_tail(1, 3, 1.5)


def test_a_run_whose_choices_are_the_controls_reads_as_the_methods():
    """OSULeaf's pattern: the widest pair everywhere, decided, with the labels shuffled as with the real ones."""
    real = card_of([(19, 15)] * 8 + [(15, 15)], [5.0] * 9)
    control = card_of([(19, 15)] * 8 + [(19, 7)], [5.5] * 8 + [1.0])
    report = compare_with_control(real, control, permutation_seed=10_000)
    assert report.same == 8 and report.chance == pytest.approx(9 / 20)
    assert report.p_value == pytest.approx(binomial_tail(8, 9, 1 / 20)) and report.p_value < 1e-8
    assert [layer.reading for layer in report.layers] == ["method"] * 8 + ["data"]
    assert report.method_made == 8 and report.data_decided == 1 and report.prior_made_it
    assert "method's on this training split" in report.verdict() and "search_arch_holdout" in report.verdict()
    lines = report.summary().splitlines()
    assert len(lines) == 2 + 9 and lines[2].split()[-2:] == ["yes", "method"]


def test_a_run_that_differs_from_its_control_reads_as_the_datas():
    """The planted task's pattern: decided choices the control did not make (or made without deciding)."""
    real = card_of([(7, 3), (7, 7), (3, 15)], [30.0, 31.0, 2.0])
    control = card_of([(7, 15), (7, 7), (19, 1)], [2.0, 1.0, 4.0])  # the same pair once, undecided there
    report = compare_with_control(real, control, permutation_seed=10_003)
    assert report.same == 1 and report.method_made == 0 and not report.prior_made_it
    assert [layer.reading for layer in report.layers] == ["data", "data", "undecided"]
    assert report.data_decided == 2 and "2 of 3 passed the decision test" in report.verdict()
    nothing = compare_with_control(card_of([(3, 1)] * 3, [1.0, 0.5, None]), card_of([(7, 1)] * 3, [0.0] * 3), 1)
    assert nothing.data_decided == 0 and "has not shown that the data prefer" in nothing.verdict()


def test_the_report_round_trips_through_json():
    report = compare_with_control(card_of([(7, 3), (19, 15)], [30.0, 5.0]), card_of([(7, 15), (19, 15)], [2.0, 6.0]),
                                  permutation_seed=10_002)
    data = json.loads(json.dumps(report.to_dict()))
    again = ShuffledControl.from_dict(data)
    assert again == report and again.verdict() == data["verdict"] and data["method_made"] == 1
    assert data["passes"] == 1000.0 and data["permutation_seed"] == 10_002
    with pytest.raises(ValueError, match="shuffled-control record"):
        ShuffledControl.from_dict({"format": "dashkit.archcard"})


def test_cards_of_other_layers_or_spaces_are_refused():
    real = card_of([(7, 3), (19, 15)], [3.0, 3.0])
    with pytest.raises(ValueError, match="other layers"):
        compare_with_control(real, card_of([(7, 3), (19, 15)], [3.0, 3.0], names=["a", "b"]), 1)
    other = SearchSpace((3, 5), (1, 2), dims=1)
    with pytest.raises(ValueError, match="another space"):
        compare_with_control(real, card_of([(3, 1), (5, 2)], [3.0, 3.0], space=other), 1)
    with pytest.raises(TypeError, match="accepted: a dashkit.ArchCard"):
        compare_with_control(real, {"layers": []}, 1)


def test_the_planted_search_stands_apart_from_its_shuffled_control(tmp_path):
    """The search's unit test with its control (planted1d, seed 8, the task's standard settings, as in
    ``test_tasks_planted``): on the real targets every planted pair is found and decided by a wide margin; the
    same search with the targets shuffled decides far less, so every layer reads as the data's. Over ten seeds
    the real searches' z had median 34.7 and the controls' 3.3, at most 11.7 (RESULTS.md, "What the search chooses
    when the targets are shuffled"); the same 24-second search twice, repeatable with the FFT backend."""
    task = tasks.get("planted1d")
    cfg = make_config("standard", task.defaults, seed=8, device="cpu", search_backend="fft")
    run_dir = tmp_path / "run"
    card = pipeline.search(task, cfg, run_dir)
    report = pipeline.shuffled_control(run_dir)
    assert {layer.name: [layer.k, layer.d] for layer in card.layers} == task.info["planted"]
    assert [layer.reading for layer in report.layers] == ["data"] * 3, report.summary()
    assert not report.prior_made_it and report.data_decided == 3
    assert min(layer.z for layer in report.layers) > 2 * max(layer.control_z for layer in report.layers)
    assert report.permutation_seed == PERMUTATION_SEED_OFFSET + 8 and report.passes == card.meta["passes"]
    # the control is a search of its own, with the run's config, on the shuffled targets
    control_rd = RunDir(run_dir / CONTROL_DIR)
    assert control_rd.is_done("search") and control_rd.read_json("config.json")["config"] == \
        RunDir(run_dir).read_json("config.json")["config"]
    assert ShuffledControl.from_dict(RunDir(run_dir).read_json(REPORT_FILE)) == report
    assert "shuffled-target control" in show(run_dir) and report.verdict() in show(run_dir)
    seconds = control_rd.done_info("search")["seconds"]
    assert pipeline.shuffled_control(run_dir) == report  # read back, not searched again
    assert control_rd.done_info("search")["seconds"] == seconds


@pytest.mark.filterwarnings("ignore::dashkit.supernet.SearchUndecidedWarning")  # 8 search steps
def test_the_command_line_prints_the_comparison(tmp_path, capsys):
    dashkit.run("planted1d", preset="smoke", out=tmp_path / "run", figures=False, verbose=False)
    assert main(["shuffled-control", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "The search on shuffled targets chose" in out and "convs.2" in out
    assert (tmp_path / "run" / REPORT_FILE).is_file() and (tmp_path / "run" / CONTROL_DIR / "archcard.json").is_file()


@pytest.mark.filterwarnings("ignore::dashkit.supernet.SearchUndecidedWarning")
def test_bad_runs_are_refused_with_what_to_do(tmp_path, capsys):
    task = tasks.get("planted1d")
    cfg = make_config("smoke", task.defaults, seed=0, device="cpu")
    pipeline.open_run_dir(tmp_path / "fresh", task, cfg, preset="smoke")  # config.json, no search yet
    with pytest.raises(FileNotFoundError, match="has not finished its search"):
        pipeline.shuffled_control(tmp_path / "fresh")
    assert main(["shuffled-control", str(tmp_path / "nowhere")]) == 2
    assert "not a dashkit run directory" in capsys.readouterr().err
    other = dashkit.tasks.get("planted1d", n_train=64)  # the same name, other data
    pipeline.search(task, cfg, tmp_path / "done")
    with pytest.raises(ValueError, match="is not the run's task"):
        pipeline.shuffled_control(tmp_path / "done", task=other)
    bilevel = make_config("smoke", task.defaults, seed=0, device="cpu", search_scheme="bilevel")
    pipeline.search(task, bilevel, tmp_path / "bilevel")
    with pytest.raises(ValueError, match="search_arch_holdout = 0"):
        pipeline.shuffled_control(tmp_path / "bilevel")
