"""Pretrained encoders from local files, checked against the libraries that made the files.

torchvision's VGG16 / VGG16-BN and a timm ResNet are built with random weights (batch-norm
statistics randomized too, so that they count), saved as their own state_dicts, loaded into
pyseg's encoders, and the encoders' intermediate features compared with the reference
network's on the same input. Nothing is downloaded.
"""

from __future__ import annotations

import copy
import os
import sys

import pytest
import torch
from torch import nn

import pyseg
from pyseg.cli import main

torchvision = pytest.importorskip("torchvision")
pre = pytest.importorskip("pyseg_plugins.architectures._pretrained")

X32 = 1, 3, 32, 32
# Same float32 operations in the same order up to oneDNN's blocking: round-off only.
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def skip_random_init(monkeypatch):
    """pyseg's models built without their random initialization (torch.empty memory): the
    layers a file fills then hold only what the file gave them, and the 100M-parameter
    fc6 layers cost no sampling."""
    for name in ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_"):
        monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters (fresh ones are 0/1)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _features_only(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("features.")}


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory):
    """(file, torchvision VGG16 in eval mode): the full state_dict, classifier included."""
    torch.manual_seed(0)
    net = torchvision.models.vgg16().eval()
    path = tmp_path_factory.mktemp("tv") / "vgg16-397923af.pth"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="module")
def vgg16_bn(tmp_path_factory):
    """(file, torchvision VGG16-BN in eval mode), the full state_dict without
    ``num_batches_tracked`` (torchvision's published file predates it)."""
    torch.manual_seed(0)
    net = _randomize_bn(torchvision.models.vgg16_bn()).eval()
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path_factory.mktemp("tv") / "vgg16_bn-6c64b313.pth"
    torch.save(state, path)
    return path, net


def _pool_outputs(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's ``features`` run layer by layer: the output of each max pool."""
    outs = []
    for layer in features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            outs.append(x)
    return outs


def _vgg_encoder_pools(encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """pyseg's VGGEncoder, stage by stage: each stage's pooled output."""
    _, skips = encoder(x)
    outs = []
    for stage in encoder.stages:
        x = torch.nn.functional.max_pool2d(stage(x), 2, 2)
        outs.append(x)
    assert len(skips) == len(outs) == 5
    return outs


# ----------------------------------------------------------------------- the layer map

@pytest.mark.parametrize("batch_norm", [False, True])
def test_layer_map_names_torchvision_layers(batch_norm):
    """The explicit map names exactly torchvision's convolutions and batch norms."""
    with torch.device("meta"):
        net = torchvision.models.vgg16_bn() if batch_norm else torchvision.models.vgg16()
    convs = [f"features.{i}" for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    bns = [f"features.{i}" for i, m in enumerate(net.features) if isinstance(m, nn.BatchNorm2d)]
    names = pre.torchvision_vgg16_names(batch_norm)
    assert [c for c, _ in names] == convs
    assert [b for _, b in names] == (bns if batch_norm else [None] * 13)


# ----------------------------------------------------------------------- VGG16 encoders

@pytest.mark.parametrize("batch_norm", [False, True])
def test_segnet_encoder_features_equal_torchvision(batch_norm, vgg16, vgg16_bn, skip_random_init):
    path, ref = vgg16_bn if batch_norm else vgg16
    model = pyseg.create_model("segnet", batch_norm=batch_norm, encoder_weights=path).eval()
    x = torch.rand(X32)
    with torch.no_grad():
        ours, theirs = _vgg_encoder_pools(model.encoder, x), _pool_outputs(ref.features, x)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)
    # Every tensor of the encoder came from the file, batch-norm statistics included.
    for (conv, bn), (cname, bname) in zip(pre.vgg16_encoder_convs(model.encoder),
                                          pre.torchvision_vgg16_names(batch_norm)):
        assert torch.equal(conv.weight, ref.state_dict()[f"{cname}.weight"])
        if batch_norm:
            assert torch.equal(bn.running_var, ref.state_dict()[f"{bname}.running_var"])


def test_deconvnet_encoder_and_fc6_fc7(vgg16_bn, skip_random_init):
    path, ref = vgg16_bn
    model = pyseg.create_model("deconvnet", encoder_weights=path).eval()
    x = torch.rand(X32)
    with torch.no_grad():
        for a, b in zip(_vgg_encoder_pools(model.encoder, x), _pool_outputs(ref.features, x)):
            torch.testing.assert_close(a, b, **TOL)
        # fc6 as a 7x7 convolution over a 7x7 map is the linear layer over its flattening;
        # fc6/fc7 have no bias here (a batch norm follows them).
        pool5 = torch.rand(2, 512, 7, 7)
        fc6 = model.fc[0](pool5).flatten(1)
        lin6 = ref.classifier[0]
        torch.testing.assert_close(fc6, pool5.flatten(1) @ lin6.weight.T, **TOL)
        h = torch.rand(2, 4096, 1, 1)
        lin7 = ref.classifier[3]
        torch.testing.assert_close(model.fc[4](h).flatten(1), h.flatten(1) @ lin7.weight.T, **TOL)


def _fcn_reference(ref: nn.Module) -> nn.Sequential:
    """torchvision's VGG16 features as the reference FCN lays them out: the first
    convolution pads by 100 and the pools round up."""
    features = copy.deepcopy(ref.features)
    features[0].padding = (100, 100)
    for m in features:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True
    return features


def test_fcn32s_encoder_and_fc6_fc7_equal_torchvision(vgg16, skip_random_init):
    path, ref = vgg16
    model = pyseg.create_model("fcn32s", encoder_weights=path).eval()
    x = torch.rand(X32)
    with torch.no_grad():
        pool3 = model.to_pool3(x)
        pool4 = model.to_pool4(pool3)
        pool5 = model.to_pool5(pool4)
        theirs = _pool_outputs(_fcn_reference(ref), x)
        for a, b in zip((pool3, pool4, pool5), theirs[2:]):
            torch.testing.assert_close(a, b, **TOL)
        # fc6 (7x7 conv) + fc7 (1x1 conv) on a 7x7 pool5 map = torchvision's classifier up
        # to fc7's ReLU on the flattened map (its avgpool is the identity at 7x7).
        p5 = torch.rand(1, 512, 7, 7)
        ours = model.fc(p5).flatten(1)
        torch.testing.assert_close(ours, ref.classifier[:5](ref.avgpool(p5).flatten(1)), **TOL)
        model.score_fr.weight.zero_()  # not from the file: uninitialized here
        assert model(x).shape == (1, 3, 32, 32)


def test_fcn8s_takes_the_same_weights(vgg16, skip_random_init):
    """FCN-16s/8s share FCN-32s's backbone code; FCN-8s stands for both (a 500 MB load)."""
    path, ref = vgg16
    model = pyseg.create_model("fcn8s", encoder_weights=path)
    state = ref.state_dict()
    convs = [c for m in model.encoder_modules() for c, _ in pre.vgg16_encoder_convs(m)]
    for conv, (cname, _) in zip(convs, pre.torchvision_vgg16_names(False)):
        assert torch.equal(conv.bias, state[f"{cname}.bias"])
    assert torch.equal(model.fc[0].weight.flatten(1), state["classifier.0.weight"])
    assert torch.equal(model.fc[3].weight.flatten(1), state["classifier.3.weight"])


def test_torchvision_uses_the_hub_cache_only(vgg16_bn, tmp_path, monkeypatch, skip_random_init):
    path, ref = vgg16_bn
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    folder = tmp_path / "hub" / "checkpoints"
    with pytest.raises(pre.EncoderWeightsError) as e:
        pyseg.create_model("segnet", encoder_weights="torchvision")
    assert "vgg16_bn-6c64b313.pth" in str(e.value) and str(folder) in str(e.value)
    folder.mkdir(parents=True)
    os.symlink(path, folder / "vgg16_bn-6c64b313.pth")
    model = pyseg.create_model("segnet", encoder_weights="torchvision")
    assert torch.equal(model.encoder.stages[0][0].weight, ref.features[0].weight)


# ----------------------------------------------------------------------- normalization

def test_imagenet_normalization_matches_torchvision_transform():
    tf = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()
    model = pyseg.create_model("segnet", width=0.125, input_norm="imagenet")
    x = torch.rand(2, 3, 8, 8)
    expected = torchvision.transforms.functional.normalize(x, tf.mean, tf.std)
    torch.testing.assert_close(model.normalize(x), expected)
    assert pyseg.create_model("segnet", width=0.125).input_norm == "none"


def test_pretrained_model_normalizes_its_input(vgg16, skip_random_init):
    path, ref = vgg16
    model = pyseg.create_model("segnet", batch_norm=False, encoder_weights=path).eval()
    assert model.input_norm == "imagenet"
    x = torch.rand(X32)
    with torch.no_grad():
        tf = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()
        normalized = torchvision.transforms.functional.normalize(x, tf.mean, tf.std)
        expected = _pool_outputs(ref.features, normalized)[-1]
        h, _ = model.encoder(model.normalize(x))
    torch.testing.assert_close(h, expected, **TOL)


# ----------------------------------------------------------------------- bad files

@pytest.fixture(scope="module")
def bn_features(vgg16_bn):
    """VGG16-BN's features tensors (all SegNet's encoder needs)."""
    return _features_only(vgg16_bn[1].state_dict())


def _raises(match: str, **kwargs):
    with pytest.raises(pre.EncoderWeightsError, match=match):
        pyseg.create_model("segnet", **kwargs)


def test_missing_file_and_not_a_file(tmp_path):
    _raises("file not found", encoder_weights=tmp_path / "nope.pth")
    _raises("not a regular file", encoder_weights=tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _raises("not a regular file", encoder_weights=fifo)


def test_file_with_code_or_garbage_is_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module, not a dict
    _raises("pickled Python objects", encoder_weights=tmp_path / "module.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    _raises("cannot read", encoder_weights=tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    _raises("does not hold a state_dict", encoder_weights=tmp_path / "list.pth")


def test_missing_keys_are_named(bn_features, tmp_path):
    state = dict(bn_features)
    del state["features.40.weight"], state["features.41.running_var"]
    torch.save(state, tmp_path / "partial.pth")
    _raises(r"lacks 2 of the \d+ tensors.*features\.40\.weight, features\.41\.running_var",
            encoder_weights=tmp_path / "partial.pth")


def test_mismatched_shape_is_named(bn_features, tmp_path):
    state = dict(bn_features)
    state["features.3.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    _raises(r"features\.3\.weight is \[64, 64, 5, 5\] in the file, the model needs "
            r"\[64, 64, 3, 3\]", encoder_weights=tmp_path / "bad.pth")


def test_keys_of_another_network_are_refused(bn_features, timm_resnet, tmp_path):
    """A file with extra tensors is another network's (VGG19's, a deeper ResNet's): the
    extra ones would otherwise be left out without a word."""
    state = {**bn_features, "features.52.weight": torch.zeros(512, 512, 3, 3)}
    torch.save(state, tmp_path / "vgg19ish.pth")
    _raises(r"holds 1 tensors that this network does not have.*features\.52\.weight",
            encoder_weights=tmp_path / "vgg19ish.pth")
    state = {**timm_resnet[1].state_dict(), "layer1.2.conv1.weight": torch.zeros(64, 64, 3, 3)}
    torch.save(state, tmp_path / "resnet34ish.pth")
    with pytest.raises(pre.EncoderWeightsError, match=r"layer1\.2\.conv1\.weight"):
        pyseg.create_model("unet", encoder="timm:resnet18",
                           encoder_weights=tmp_path / "resnet34ish.pth")


def test_wrong_batch_norm_flavour(vgg16, bn_features, tmp_path, skip_random_init):
    _raises("holds VGG16 weights and this encoder is VGG16-BN", encoder_weights=vgg16[0])
    torch.save(bn_features, tmp_path / "bn.pth")
    _raises("holds VGG16-BN weights and this encoder is VGG16", batch_norm=False,
            encoder_weights=tmp_path / "bn.pth")


def test_fcn_needs_the_classifier(vgg16, tmp_path, skip_random_init):
    torch.save(_features_only(vgg16[1].state_dict()), tmp_path / "features.pth")
    with pytest.raises(pre.EncoderWeightsError, match=r"lacks 4 of .*classifier\.0\.weight"):
        pyseg.create_model("fcn8s", encoder_weights=tmp_path / "features.pth")


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0.5), "width=1.0"),
    (dict(in_channels=1), "in_channels=3"),
    (dict(input_norm="imagenet-ish"), "input_norm must be one of"),
])
def test_options_that_cannot_take_the_weights(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        pyseg.create_model("segnet", encoder_weights=tmp_path / "unused.pth", **kwargs)


def test_unet_own_encoder_takes_no_weights(tmp_path):
    with pytest.raises(ValueError, match="encoder='timm:NAME'"):
        pyseg.create_model("unet", encoder_weights=tmp_path / "w.pth")
    with pytest.raises(ValueError, match="leave out depth"):
        pyseg.create_model("unet", encoder="timm:resnet18", depth=3)


# ----------------------------------------------------------------------- timm

@pytest.fixture(scope="module")
def timm_resnet(tmp_path_factory):
    """(file, timm ResNet-18 classifier in eval mode), saved with its classifier head."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = _randomize_bn(timm.create_model("resnet18", pretrained=False)).eval()
    path = tmp_path_factory.mktemp("timm") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return path, net


def _resnet_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """A ResNet's stage outputs (strides 2 to 32), written out from its layers."""
    x = net.act1(net.bn1(net.conv1(x)))
    outs = [x]
    x = net.maxpool(x)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        outs.append(x)
    return outs


def test_timm_encoder_features_equal_timm(timm_resnet):
    path, ref = timm_resnet
    model = pyseg.create_model("unet", num_classes=2, encoder="timm:resnet18",
                               encoder_weights=path).eval()
    assert model.input_norm == "imagenet"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.encoder(x), _resnet_features(ref, x)
        assert len(ours) == len(theirs) == 5
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, **TOL)
        assert model(torch.rand(1, 3, 50, 38)).shape == (1, 2, 50, 38)


@pytest.mark.parametrize("name", ["fcn32s", "fcn8s"])
def test_timm_fcn_head(name, timm_resnet):
    """The FCN head on a timm encoder: the encoder is timm's; FCN-32s is the deepest map's
    scores upsampled bilinearly 32x (torch's interpolate) and cropped to the input."""
    path, ref = timm_resnet
    model = pyseg.create_model(name, num_classes=2, encoder="timm:resnet18",
                               encoder_weights=path, input_norm="none").eval()
    x = torch.rand(1, 3, 50, 38)
    padded = torch.nn.functional.pad(x, (0, 64 - 38, 0, 64 - 50))
    with torch.no_grad():
        for a, b in zip(model.encoder(padded), _resnet_features(ref, padded)):
            torch.testing.assert_close(a, b, **TOL)
        out = model(x)
        assert out.shape == (1, 2, 50, 38)
        if name == "fcn32s":
            scores = model.scores[-1](_resnet_features(ref, padded)[-1])
            expected = torch.nn.functional.interpolate(scores, scale_factor=32,
                                                       mode="bilinear", align_corners=False)
            torch.testing.assert_close(out, expected[..., :50, :38], **TOL)
    with pytest.raises(ValueError, match="leave out width"):
        pyseg.create_model(name, encoder="timm:resnet18", width=0.5)


def test_timm_safetensors_file(timm_resnet, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    ref = timm_resnet[1]
    file = tmp_path / "model.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, file)
    model = pyseg.create_model("unet", encoder="timm:resnet18", encoder_weights=file)
    assert torch.equal(model.encoder.layer4[1].bn2.running_mean, ref.layer4[1].bn2.running_mean)


def test_timm_wrong_file_names_missing_keys(vgg16, bn_features, tmp_path):
    pytest.importorskip("timm")
    torch.save(bn_features, tmp_path / "vgg.pth")
    with pytest.raises(pre.EncoderWeightsError, match=r"lacks \d+ of the \d+ .*conv1\.weight"):
        pyseg.create_model("unet", encoder="timm:resnet18", encoder_weights=tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="timm:NAME"):
        pyseg.create_model("unet", encoder="resnet18")


def test_without_timm_the_option_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ImportError, match="pip install timm"):
        pyseg.create_model("unet", encoder="timm:resnet18")


# ----------------------------------------------------------------------- freezing

def _step(model: nn.Module, x: torch.Tensor, lr: float = 0.1) -> None:
    opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    model.train()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (x.shape[0], 32, 32))
                                      ).backward()
    opt.step()


@pytest.mark.parametrize("name, kwargs", [
    ("segnet", dict(width=0.125)),
    ("deconvnet", dict(width=0.0625)),
    ("fcn8s", dict(width=0.0625)),
    ("unet", dict(encoder="timm:resnet18")),
    ("fcn16s", dict(encoder="timm:resnet18")),
])
def test_frozen_encoder_gets_no_gradient_and_does_not_change(name, kwargs):
    if "encoder" in kwargs:
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = pyseg.create_model(name, freeze_encoder=True, **kwargs)
    encoder = {k: v.clone() for m in model.encoder_modules()
               for k, v in m.state_dict().items()}  # parameters and batch-norm statistics
    rest = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    _step(model, torch.rand(2, 3, 32, 32))
    assert all(p.grad is None and not p.requires_grad for p in model.encoder_parameters())
    after = {k: v for m in model.encoder_modules() for k, v in m.state_dict().items()}
    assert all(torch.equal(encoder[k], after[k]) for k in encoder)
    params = dict(model.named_parameters())
    assert any(not torch.equal(v, params[n]) for n, v in rest.items())  # the head learned
    # Unfrozen, the encoder trains (and its batch norms are in training mode again).
    model.set_encoder_frozen(False)
    assert all(m.training for enc in model.encoder_modules() for m in enc.modules())
    _step(model, torch.rand(2, 3, 32, 32))
    after = {k: v for m in model.encoder_modules() for k, v in m.state_dict().items()}
    assert any(not torch.equal(encoder[k], after[k]) for k in encoder)


# ----------------------------------------------------------------------- pyseg train

def _cfg(tmp_path, **kwargs):
    from pyseg.engine import TrainConfig

    base = dict(arch="segnet", arch_kwargs={"width": 0.125}, img_size=32, epochs=2,
                batch_size=2, train_samples=2, val_samples=2, out=str(tmp_path / "run"),
                lr_schedule="constant")
    return TrainConfig(**{**base, **kwargs})


def test_train_unfreezes_after_n_epochs_with_its_own_lr(tmp_path):
    from pyseg.engine import train

    cfg = _cfg(tmp_path, freeze_encoder=True, unfreeze_after=1, encoder_lr=1e-4)
    model = pyseg.create_model("segnet", num_classes=3, width=0.125)
    start = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    seen = []

    def snapshot(epoch, record):
        seen.append({k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()})

    result = train(cfg, model=model, on_epoch_end=snapshot, quiet=True, plots=False)
    assert all(torch.equal(start[k], seen[0][k]) for k in start)  # frozen in epoch 1
    assert any(not torch.equal(start[k], seen[1][k]) for k in start)  # trained in epoch 2
    state = torch.load(result.out / "last.pt", weights_only=True)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert lrs == pytest.approx([1e-4, 1e-3])  # encoder group, then the rest (constant schedule)


def test_resumed_run_unfreezes_where_the_uninterrupted_one_did(tmp_path):
    """Cut after the frozen epoch and resumed, a run ends with the weights of the run that
    was not cut: the encoder is unfrozen at the same epoch, with the same learning rates."""
    from pyseg.engine import train

    opts = dict(freeze_encoder=True, unfreeze_after=1, encoder_lr=1e-4, lr_schedule="cosine")
    full = train(_cfg(tmp_path / "full", **opts), quiet=True, plots=False)

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "cut", **opts), on_epoch_end=stop, quiet=True, plots=False)
    resumed = train(_cfg(tmp_path / "cut", resume=True, **opts), quiet=True, plots=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_a_pretrained_run_loads_without_the_file(timm_resnet, tmp_path):
    from pyseg.engine import load_model, train

    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(timm_resnet[0].read_bytes())
    cfg = _cfg(tmp_path, arch="unet", epochs=1, freeze_encoder=True, arch_kwargs={
        "encoder": "timm:resnet18", "encoder_weights": str(weights)})
    result = train(cfg, quiet=True, plots=False)
    weights.unlink()  # the checkpoint must not need it
    model, fields = load_model(result.out / "last.pt")
    assert fields["arch_kwargs"] == {"encoder": "timm:resnet18", "input_norm": "imagenet"}
    assert model.input_norm == "imagenet"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model.eval()(x))


@pytest.mark.parametrize("argv, match", [
    (["--freeze-encoder"], "--freeze-encoder: architecture 'unet' has no pretrainable"),
    (["--unfreeze-after", "2"], "--unfreeze-after needs --freeze-encoder"),
    (["--encoder-lr", "0"], "--encoder-lr must be a positive number"),
    (["--encoder-weights", "/nonexistent/vgg16.pth", "--arch", "segnet"], "file not found"),
])
def test_train_flags_errors(argv, match, tmp_path, capsys):
    tiny = ["--img-size", "32", "--epochs", "1", "--batch-size", "2", "--train-samples", "2",
            "--val-samples", "2", "--quiet", "--out", str(tmp_path / "run")]
    assert main(["train", *tiny, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_train_flags_reach_the_run(timm_resnet, tmp_path):
    from pyseg.engine import load_checkpoint

    out = tmp_path / "run"
    argv = ["train", "--arch", "unet", "--arch-kwargs", '{"encoder": "timm:resnet18"}',
            "--encoder-weights", str(timm_resnet[0]), "--freeze-encoder", "--unfreeze-after",
            "1", "--encoder-lr", "1e-4", "--img-size", "32", "--epochs", "1", "--batch-size",
            "2", "--train-samples", "2", "--val-samples", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    state = load_checkpoint(out / "last.pt")
    config = state["config"]
    assert (config["freeze_encoder"], config["unfreeze_after"], config["encoder_lr"]) == (
        True, 1, 1e-4)
    assert config["arch_kwargs"]["encoder_weights"] == str(timm_resnet[0])
    assert state["arch_kwargs"] == {"encoder": "timm:resnet18", "input_norm": "imagenet"}
    # Frozen through its only epoch: the encoder is the file's.
    ref = timm_resnet[1].state_dict()
    enc = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    assert enc and all(torch.equal(v, ref[k]) for k, v in enc.items())
