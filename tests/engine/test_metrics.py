import pytest
import torch

from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion


def test_confusion_and_iou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 1]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 4, 0], [1, 0, 1]]
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["pixel_acc"] == pytest.approx(6 / 8)
    # a: tp 1, union 1+1+1 = 3; b: tp 4, union 5; c: tp 1, union 2
    assert m["iou"] == pytest.approx({"a": 1 / 3, "b": 4 / 5, "c": 1 / 2})
    assert m["miou"] == pytest.approx((1 / 3 + 4 / 5 + 1 / 2) / 3)


def test_absent_class_left_out_of_mean():
    t = torch.zeros(4, dtype=torch.long)
    m = metrics_from_confusion(confusion_matrix(t, t, 3), ["a", "b", "c"])
    assert m["iou"] == {"a": 1.0, "b": None, "c": None}
    assert m["miou"] == 1.0


def test_ignored_targets_not_counted():
    cm = confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 255, -1]), 3)
    assert cm.sum() == 1
