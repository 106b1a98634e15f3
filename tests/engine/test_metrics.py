import pytest
import torch

from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion, segmentation_metrics


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


def test_ignore_index_pixels_not_counted():
    # Whatever is predicted at a 255 pixel, it counts nowhere (VOC / Cityscapes / mmseg).
    pred = torch.tensor([0, 1, 2, 2, 0])
    target = torch.tensor([0, 255, 255, 2, 255])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    m = segmentation_metrics(pred, target, ["a", "b", "c"])
    assert m["pixel_acc"] == 1.0 and m["miou"] == 1.0 and m["iou"]["b"] is None
    # Another ignore label, and none at all.
    assert confusion_matrix(pred, torch.tensor([0, -1, 2, 2, -1]), 3, ignore_index=-1).sum() == 3
    with pytest.raises(ValueError, match="target has value 255 outside the classes"):
        confusion_matrix(pred, target, 3, ignore_index=None)


def test_out_of_range_values_are_errors_not_dropped():
    with pytest.raises(ValueError, match=r"target has value 3 outside the classes \[0, 3\) that "
                                         "is not the ignore index 255"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="target has value -1"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -1]), 3)
    with pytest.raises(ValueError, match="pred has value 5"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1, 1]), 3)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(torch.rand(2, 3), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


@pytest.mark.parametrize("num_classes, ignore_index", [(3, 255), (7, 255), (21, 255),
                                                       (5, None), (5, -100), (6, 0)])
def test_against_torchmetrics(num_classes, ignore_index):
    tm = pytest.importorskip("torchmetrics.classification")
    g = torch.Generator().manual_seed(num_classes)
    target = torch.randint(0, num_classes, (4, 23, 17), generator=g)
    # Predictions right about half the time, so IoUs are neither 0 nor 1.
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.5, target,
                       torch.randint(0, num_classes, target.shape, generator=g))
    absent = num_classes - 1  # neither true nor predicted: no IoU, left out of the mean
    pred[pred == absent] = 1
    target[target == absent] = 1
    if ignore_index is not None:
        target[torch.rand(target.shape, generator=g) < 0.2] = ignore_index
    kw = {"num_classes": num_classes, "ignore_index": ignore_index}
    names = [f"c{i}" for i in range(num_classes)]

    cm = confusion_matrix(pred, target, num_classes, ignore_index)
    assert torch.equal(cm, tm.MulticlassConfusionMatrix(**kw)(pred, target))
    m = metrics_from_confusion(cm, names, ignore_index)
    acc = tm.MulticlassAccuracy(average="micro", **kw)(pred, target)
    assert m["pixel_acc"] == pytest.approx(acc.item(), rel=1e-6)
    per_class = tm.MulticlassJaccardIndex(average="none", **kw)(pred, target)
    for i, name in enumerate(names):
        if m["iou"][name] is not None:
            assert m["iou"][name] == pytest.approx(per_class[i].item(), rel=1e-6), name
    assert m["iou"][names[absent]] is None
    if ignore_index == 0:
        assert m["iou"]["c0"] is None  # the ignored class has no IoU
    miou = tm.MulticlassJaccardIndex(average="macro", **kw)(pred, target)
    assert m["miou"] == pytest.approx(miou.item(), rel=1e-6)
