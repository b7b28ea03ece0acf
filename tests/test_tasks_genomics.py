"""The DeepSEA-like genomics task: motif file, generator, cache and PWM-scan oracle."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import dashkit.tasks
from dashkit.tasks import offline_genomics as G

SMALL = dict(n_train=40, n_val=20, n_test=60, length=200)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHKIT_DATA", str(tmp_path / "data"))


def _cache_files(tmp_path):
    return sorted((tmp_path / "data" / "genomics").glob("*.npz"))


def _mean_auroc(y, s):
    return float(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(y.shape[1])]))


# ---------------------------------------------------------------- motif file

def test_motif_file_contents():
    # package data, so that an installed (not only an editable) dashkit has it
    assert G.MOTIF_FILE == Path(dashkit.__file__).resolve().parent / "data" / "jaspar_motifs.json"
    doc = json.loads(G.MOTIF_FILE.read_text())
    assert "CC BY 4.0" in doc["header"]["license"]
    assert "JASPAR 2024" in doc["header"]["citation"] and "10.1093/nar/gkad1059" in doc["header"]["citation"]
    motifs = G.load_motifs()
    assert 32 <= len(motifs) <= 48
    assert len({m.id for m in motifs}) == len(motifs)
    for m in motifs:
        assert re.fullmatch(r"MA\d{4}\.\d+", m.id), m.id
        assert m.probabilities.shape == (4, m.length) and 6 <= m.length <= 20
        assert np.allclose(m.probabilities.sum(0), 1.0) and (m.probabilities > 0).all()
        # "high information": well above what random columns carry
        assert m.information_bits() > 10.0


def test_missing_motif_file_says_what_is_expected(tmp_path, monkeypatch):
    monkeypatch.setattr(G, "MOTIF_FILE", tmp_path / "nowhere" / "jaspar_motifs.json")
    with pytest.raises(FileNotFoundError, match=r"jaspar_motifs\.json.*make_jaspar_motifs\.py"):
        G.genomics(**SMALL)
    with pytest.raises(FileNotFoundError, match="JASPAR motif file not found"):
        G.load_motifs()


def test_bad_motif_file_is_rejected(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"motifs": [{"id": "X", "name": "x", "probabilities": [[0.5, 0.5]] * 3}]}))
    with pytest.raises(ValueError, match="'X'.*columns sum to 1"):
        G.load_motifs(bad)


# ---------------------------------------------------------------- the task

def test_shapes_dtypes_and_one_hot():
    task = dashkit.tasks.get("genomics", n_labels=5, **SMALL)
    assert task.kind == "multilabel" and task.metric_name == "1-auroc" and task.num_outputs == 5
    assert task.in_shape == (4, 200) and task.defaults.backbone == "resnet1d"
    assert task.defaults.kernel_sizes == (3, 7, 11, 15, 19) and task.defaults.dilations == (1, 3, 7, 15)
    assert "JASPAR" in task.info["credit"] and task.info["sizes"] == {"train": 40, "val": 20, "test": 60}
    assert len(task.info["label_motifs"]) == 5
    for split, n in (("train", 40), ("val", 20), ("test", 60)):
        x, y = getattr(task, split).tensors
        assert x.shape == (n, 4, 200) and x.dtype == torch.float32
        assert y.shape == (n, 5) and y.dtype == torch.float32
        assert set(x.unique().tolist()) == {0.0, 1.0} and (x.sum(1) == 1).all()
        assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_label_prevalence_and_gc_content():
    task = G.genomics(n_labels=12, length=300, n_train=10, n_val=10, n_test=1500, motif_prob=0.3)
    x, y = task.test.tensors
    prevalence = y.mean(0)
    assert ((prevalence - 0.3).abs() < 0.05).all(), prevalence
    assert abs(prevalence.mean().item() - 0.3) < 0.015
    gc = x[:, 1:3].sum((1, 2)) / 300  # C + G per sequence
    # GC is drawn per sequence from U(0.35, 0.65): spread far beyond binomial noise (sd 0.03 at L=300)
    assert 0.06 < gc.std().item() < 0.11 and 0.25 < gc.min().item() and gc.max().item() < 0.75


def test_seed_determinism_and_split_independence(tmp_path, monkeypatch):
    a = G.genomics(seed=3, **SMALL)
    monkeypatch.setenv("DASHKIT_DATA", str(tmp_path / "other"))  # fresh cache: really regenerate
    b = G.genomics(seed=3, **SMALL)
    c = G.genomics(seed=4, **SMALL)
    d = G.genomics(seed=3, **dict(SMALL, n_train=70))
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).tensors[0], getattr(b, split).tensors[0])
        assert torch.equal(getattr(a, split).tensors[1], getattr(b, split).tensors[1])
        assert not torch.equal(getattr(a, split).tensors[0], getattr(c, split).tensors[0])
    # every split has its own stream, so the test set does not move when the training set grows
    assert torch.equal(a.test.tensors[0], d.test.tensors[0])
    assert not torch.equal(a.train.tensors[0][:20], a.val.tensors[0])


def test_cache_is_reused_and_truncation_regenerates(tmp_path, monkeypatch):
    first = G.genomics(**SMALL)
    files = _cache_files(tmp_path)
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))

    real = G._generate_split

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(G, "_generate_split", boom)
    again = G.genomics(**SMALL)
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    with pytest.raises(AssertionError, match="regenerated"):
        G.genomics(**dict(SMALL, seed=1))  # other parameters: another file

    size = files[0].stat().st_size
    files[0].write_bytes(files[0].read_bytes()[: size // 2])
    calls = []
    monkeypatch.setattr(G, "_generate_split", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        repaired = G.genomics(**SMALL)
    assert len(calls) == 3 and files[0].stat().st_size == size
    assert torch.equal(first.test.tensors[0], repaired.test.tensors[0])
    assert torch.equal(first.test.tensors[1], repaired.test.tensors[1])


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(n_labels=0), ValueError, r"n_labels=0 .*\[1, 48\]"),
    (dict(n_labels=2.0), TypeError, r"n_labels=2\.0 .*integer"),
    (dict(n_labels=30, grammar_labels=20), ValueError, r"n_labels=30 with grammar_labels=20 .*<= 48"),
    (dict(n_labels=3, grammar_labels=4), ValueError, r"grammar_labels=4 .*\[0, 3\]"),
    (dict(length=32), ValueError, r"length=32 .*\[64, 100000\]"),
    (dict(length=200, grammar_labels=1), ValueError, r"length=200 .*\[256, 100000\]"),
    (dict(n_test=0), ValueError, r"n_test=0 .*>= 1"),
    (dict(motif_prob=1.0), ValueError, r"motif_prob=1\.0 .*\(0\.0, 1\.0\)"),
    (dict(motif_prob="0.2"), TypeError, r"motif_prob='0\.2'"),
    (dict(decoy_prob=-0.1), ValueError, r"decoy_prob=-0\.1 .*\[0\.0, 1\.0\]"),
    (dict(seed=-1), ValueError, r"seed=-1 .*>= 0"),
])
def test_parameter_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        G.genomics(**dict(SMALL, **kwargs))


# ---------------------------------------------------------------- the oracle

def _brute_scores(x, motif):
    """Float64 loops: best log-odds over positions and strands, for each sequence."""
    w = motif.log_odds()
    rc = w[::-1, ::-1]
    seqs = x.argmax(1).numpy()
    L, k = seqs.shape[1], motif.length
    out = []
    for s in seqs:
        fwd = [w[s[i:i + k], np.arange(k)].sum() for i in range(L - k + 1)]
        rev = [rc[s[i:i + k], np.arange(k)].sum() for i in range(L - k + 1)]
        out.append((np.array(fwd), np.array(rev)))
    return out


def test_pwm_scan_matches_brute_force_and_finds_planted_sites():
    motifs = G.load_motifs()[:3]
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 60), generator=gen), 4).permute(0, 2, 1).float()
    # plant motif 0's consensus forward in sequence 0 and its reverse complement in sequence 1
    cons = motifs[0].probabilities.argmax(0)
    x[0, :, 10:10 + len(cons)] = torch.nn.functional.one_hot(torch.as_tensor(cons), 4).T.float()
    x[1, :, 30:30 + len(cons)] = torch.nn.functional.one_hot(torch.as_tensor(3 - cons[::-1].copy()), 4).T.float()
    scores = G.pwm_scan_scores(x, motifs)
    assert scores.shape == (5, 3)
    for j, m in enumerate(motifs):
        ref = [max(f.max(), r.max()) for f, r in _brute_scores(x, m)]
        np.testing.assert_allclose(scores[:, j].numpy(), ref, rtol=1e-5, atol=1e-4)
    best = motifs[0].log_odds().max(0).sum()
    np.testing.assert_allclose(scores[:2, 0].numpy(), [best, best], rtol=1e-5)


def test_pair_scan_matches_brute_force():
    a, b = G.load_motifs()[4:6]
    gen = torch.Generator().manual_seed(1)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (4, 90), generator=gen), 4).permute(0, 2, 1).float()
    gap = (5, 12)
    got = G.pair_scan_scores(x, a, b, gap)
    for n, ((fa, ra), (fb, rb)) in enumerate(zip(_brute_scores(x, a), _brute_scores(x, b))):
        best = -np.inf
        for i in range(len(fa)):
            for g in range(gap[0], gap[1] + 1):
                j = i + a.length + g  # forward: A at i, B at j
                if j < len(fb):
                    best = max(best, fa[i] + fb[j])
                j = i + b.length + g  # reverse strand: rc(B) at i, rc(A) at j
                if j < len(ra):
                    best = max(best, rb[i] + ra[j])
        assert got[n].item() == pytest.approx(best, rel=1e-5, abs=1e-4)


def test_oracle_auroc_is_high():
    task = G.genomics(n_labels=12, length=500, n_train=10, n_val=10, n_test=600)
    x, y = task.test.tensors
    scores = G.oracle_scores(x, 12)
    per_label = [roc_auc_score(y[:, j], scores[:, j]) for j in range(12)]
    assert np.mean(per_label) > 0.88 and min(per_label) > 0.7, per_label
    assert task.metric(scores, y) == pytest.approx(1 - np.mean(per_label), abs=1e-9)
    # scores of other motifs (the decoys) carry no information about these labels
    _, _, decoys = G.label_motifs(12)
    assert abs(_mean_auroc(y.numpy(), G.pwm_scan_scores(x, decoys[:12]).numpy()) - 0.5) < 0.06


def test_grammar_labels_need_the_pair_not_just_both_motifs():
    task = G.genomics(n_labels=3, grammar_labels=2, length=400, n_train=10, n_val=10, n_test=700)
    x, y = task.test.tensors
    assert task.info["label_motifs"][2].count("->") == 1 and ((y.mean(0) - 0.25).abs() < 0.06).all()
    oracle = G.oracle_scores(x, 3, 2)
    _, pairs, _ = G.label_motifs(3, 2)
    for g, (a, b) in enumerate(pairs):
        yg = y[:, 1 + g].numpy()
        pair_auc = roc_auc_score(yg, oracle[:, 1 + g])
        both = G.pwm_scan_scores(x, [a, b]).min(1).values  # "A and B both present", anywhere
        assert pair_auc > 0.95 and roc_auc_score(yg, both) < pair_auc - 0.05
