"""A dictionary measured on a text (what the Features pages read), stored beside it: read back equal, and a
damaged or foreign entry measured again, never trusted."""
import numpy as np
import pandas as pd
import pytest

from rnnviz import features as feat
from rnnviz.dashboard import column_labels
from rnnviz.features import study as fstudy
from rnnviz.model import build

TEXT = ('x = "ab" + (c)\n' * 3 + "def f(y):\n    return 'q' * y\n") * 12
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def measured(tmp_path):
    model = build(sorted(set(TEXT)), cell="lstm", hidden_size=8, num_layers=2, embed_size=4, seed=1)
    d = feat.load_or_train(model, TEXT, "tiny", feat.SAEConfig(size=24, k=4, steps=40), tmp_path)
    return model, d, fstudy.study(model, d, TEXT[:600])


def test_the_study_is_the_librarys_numbers_and_reads_back_equal(measured):
    model, d, s = measured
    text = TEXT[:600]
    want = feat.metrics(model, d, text)
    assert s.metrics == pytest.approx({k: v for k, v in want.items()}, nan_ok=True)
    acts = feat.feature_acts(model, d, text)
    np.testing.assert_allclose(np.stack([s.acts(i) for i in range(d.d_sae)], 1), acts, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.table["frequency"], (acts > 0).mean(0))
    np.testing.assert_allclose(s.table["max"], acts.max(0), rtol=1e-6)
    pd.testing.assert_frame_equal(s.labels.reset_index(drop=True),
                                  column_labels(acts, text)[fstudy.LABEL_COLUMNS].reset_index(drop=True),
                                  check_exact=False, atol=1e-6)
    assert [r["hypothesis"] for r in s.comparison] == [r["hypothesis"] for r in feat.units_vs_features(model, d, text)]
    assert s.corpus == "tiny"
    again = fstudy.study(model, d, text, cancel=lambda: True)  # read back: nothing left to cancel
    assert again.metrics == pytest.approx(s.metrics, nan_ok=True) and len(again.comparison) == len(s.comparison)
    pd.testing.assert_frame_equal(again.labels, s.labels)
    pd.testing.assert_frame_equal(again.table, s.table)


@pytest.mark.parametrize("damage", ["truncate", "foreign", "garbage"])
def test_a_damaged_entry_is_measured_again(measured, damage):
    model, d, s = measured
    meta_name, labels_name = fstudy._names(TEXT[:600])
    meta, labels = d.path / meta_name, d.path / labels_name
    if damage == "truncate":
        labels.write_bytes(labels.read_bytes()[:50])
    elif damage == "foreign":
        meta.write_text(meta.read_text().replace('"version": 1', '"version": 99'))
    else:
        meta.write_text("{not json")
    assert fstudy._read(d, TEXT[:600]) is None
    with pytest.raises(feat.Cancelled):  # not trusted: it would be measured again
        fstudy.study(model, d, TEXT[:600], cancel=lambda: True)
    again = fstudy.study(model, d, TEXT[:600])
    assert again.metrics == pytest.approx(s.metrics, nan_ok=True)
    assert fstudy._read(d, TEXT[:600]) is not None  # and stored again
