"""The model zoo: every registered model trains, keeps the input size and exports to ONNX;
the DeepLabV3 family matches torchvision; backbone weights load from ImageNet or a file."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torchvision import models as tvm
from torchvision.models import segmentation as tv_seg

from tests.tiny_coco import write_tiny_coco
from tseg.export.onnx import export_onnx
from tseg.export.parity import compare, generated_inputs
from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import ModelSpec
from tseg.train.models import get_model, list_models
from tseg.train.models.backbones import conv_from_fc

NUM_CLASSES = 3
EXPORT_SIZE = (64, 64)
ODD_SIZE = (97, 131)

ALL_MODELS = [
    "deconvnet_vgg16_bn",
    "deeplabv1_vgg16",
    "deeplabv2_resnet101",
    "deeplabv2_vgg16",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_resnet50",
    "fcn8s_vgg16",
]


def _spec(name: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        kwargs={"num_classes": NUM_CLASSES},
        classes=("Background", "Metal", "Paper"),
        palette=((0, 0, 0), (200, 60, 40), (40, 180, 60)),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=EXPORT_SIZE,
    )


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 64x64 images whose labels are blocks of colour, so the task is learnable."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (2, 4, 4), generator=generator)
    labels = labels.repeat_interleave(16, 1).repeat_interleave(16, 2)
    colours = torch.randn(NUM_CLASSES, 3, generator=generator)
    images = colours[labels].permute(0, 3, 1, 2) + 0.1 * torch.randn(2, 3, 64, 64, generator=generator)
    return images.contiguous(), labels


def _loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same dropout masks before and after the step
    return F.cross_entropy(model(images)["out"], labels)


def test_registry_lists_exactly_the_zoo():
    assert list_models() == ALL_MODELS


# The heaviest members take most of this file's time: `make test` (``-m "not slow"``) leaves
# them out of the export and CLI tests, and the ResNet-101s (whose code is the ResNet-50s' at
# another depth) out of the training step too; `make test-all` (CI) runs every member everywhere.
HEAVY = {"deconvnet_vgg16_bn", "deeplabv2_resnet101", "deeplabv3_resnet101", "deeplabv3plus_resnet101"}
RESNET101 = {name for name in HEAVY if name.endswith("_resnet101")}


def _zoo(slow: set[str]) -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in list_models()]


@pytest.mark.parametrize("name", _zoo(RESNET101))
def test_model_keeps_the_input_size_and_trains(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *ODD_SIZE))
    assert list(out) == ["out"], "no aux head unless aux_loss=True"
    assert out["out"].shape == (2, NUM_CLASSES, *ODD_SIZE)

    images, labels = _fixed_batch()
    model.train()
    assert model(images)["out"].shape == (2, NUM_CLASSES, *EXPORT_SIZE)
    # Adam (tseg-train's optimiser) at a small rate: a safe step for every model, BN or not.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    before = _loss(model, images, labels)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = _loss(model, images, labels)
    assert after < before, f"one step did not lower the loss: {before.item():.4f} -> {after.item():.4f}"


@pytest.mark.parametrize("name", _zoo(HEAVY))
def test_model_exports_with_dynamic_sizes_and_parity(name, tmp_path):
    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():  # FCN's score layers start at zero: every logit would tie
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.01)
    spec = _spec(name)
    onnx_path = export_onnx(model, spec, tmp_path / f"{name}.onnx", simplify=False)
    inputs = generated_inputs(spec)
    report = compare(model, onnx_path, inputs)
    sizes = {(case.height, case.width) for case in report.cases}
    assert sizes - {EXPORT_SIZE}, "parity must be checked at a size other than the export size"
    assert report.passed, report.summary()
    with torch.no_grad():
        assert model(torch.from_numpy(inputs[1][1][None]))["out"].std() > 0, "constant logits prove nothing"


# name -> (the options that are torchvision's configuration, torchvision's weights enum)
FIDELITY = {
    "deeplabv3_resnet50": (dict(output_stride=8, multi_grid=None), tv_seg.DeepLabV3_ResNet50_Weights),
    "deeplabv3_resnet101": (dict(output_stride=8, multi_grid=None), tv_seg.DeepLabV3_ResNet101_Weights),
    "deeplabv3_mobilenet_v3_large": ({}, tv_seg.DeepLabV3_MobileNet_V3_Large_Weights),
}


@pytest.mark.parametrize("name", list(FIDELITY))
def test_deeplabv3_matches_torchvision(name):
    """torchvision's state dict loads strictly and gives the same logits; parameter counts
    are torchvision's published ones (21 classes, aux head)."""
    torch.manual_seed(0)
    reference = getattr(tv_seg, name)(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    options, weights_enum = FIDELITY[name]
    ours = get_model(name, num_classes=21, aux_loss=True, **options)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == weights_enum.DEFAULT.meta["num_params"]
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    for key in ("out", "aux"):
        assert (expected[key] - got[key]).abs().max() <= 1e-4, key


def test_deeplabv3_output_stride_and_multi_grid():
    def layer4_rates(model):
        return [block.conv2.dilation[0] for block in model.backbone.layer4]

    def aspp_rates(model):
        return [branch[0].dilation[0] for branch in model.classifier[0].convs[1:4]]

    default = get_model("deeplabv3_resnet50", num_classes=3)
    assert (layer4_rates(default), aspp_rates(default)) == ([2, 4, 8], [6, 12, 18])
    os8 = get_model("deeplabv3_resnet50", num_classes=3, output_stride=8)
    assert (layer4_rates(os8), aspp_rates(os8)) == ([4, 8, 16], [12, 24, 36])
    as_torchvision = get_model("deeplabv3_resnet50", num_classes=3, output_stride=8, multi_grid=None)
    assert layer4_rates(as_torchvision) == [2, 4, 4]
    with torch.no_grad():
        assert default.backbone(torch.zeros(1, 3, 64, 64))["out"].shape[-1] == 4
        assert os8.backbone(torch.zeros(1, 3, 64, 64))["out"].shape[-1] == 8
    with pytest.raises(TsegError, match="output_stride must be one of"):
        get_model("deeplabv3plus_resnet50", num_classes=3, output_stride=32)


def test_aux_head_gives_aux_logits_at_the_input_size():
    for name in ("deeplabv3_resnet50", "deeplabv3plus_resnet50"):
        model = get_model(name, num_classes=3, aux_loss=True).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 45, 61))
        assert {k: tuple(v.shape) for k, v in out.items()} == {"out": (1, 3, 45, 61), "aux": (1, 3, 45, 61)}


def test_backbone_weights_from_a_pth_file(tmp_path):
    resnet = tvm.resnet50()
    state = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}  # fc is optional
    torch.save(state, tmp_path / "resnet50.pth")
    model = get_model("deeplabv3plus_resnet50", num_classes=3, backbone_weights=str(tmp_path / "resnet50.pth"))
    ours = model.backbone.state_dict()
    assert ours.keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in ours.items())


def test_fc_layers_become_convolutions_and_decimate_as_in_the_papers():
    fc = torch.nn.Linear(8 * 7 * 7, 16)
    conv = conv_from_fc(fc, 8)  # FCN: the same function on a 7x7 map
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(conv(x).flatten(1), fc(x.flatten(1)))
    decimated = conv_from_fc(fc, 8, padding=12, dilation=12, out_step=4, space_step=3)  # DeepLab fc6
    assert decimated.weight.shape == (4, 8, 3, 3) and decimated.dilation == (12, 12)
    assert torch.equal(decimated.weight, fc.weight.view(16, 8, 7, 7)[::4, :, ::3, ::3])
    assert torch.equal(decimated.bias, fc.bias[::4])


def test_backbone_weights_errors_are_one_line(tmp_path):
    torch.save(tvm.resnet50().state_dict(), tmp_path / "resnet50.pth")
    torch.save({"state_dict": {}}, tmp_path / "nested.pth")
    cases = [
        (
            tmp_path / "resnet50.pth",
            "deeplabv3_resnet101",
            r"does not fit the ResNet backbone: missing \d+ \(layer3",
        ),
        (tmp_path / "nested.pth", "deeplabv3_resnet50", "is not a state dict: .* keys 'state_dict'"),
        (tmp_path / "missing.pth", "fcn8s_vgg16", "backbone weights file not found"),
        ("imagenet1k", "fcn8s_vgg16", "unknown backbone_weights 'imagenet1k'; valid: None, 'imagenet' or"),
    ]
    for weights, name, message in cases:
        with pytest.raises(TsegError, match=message) as err:
            get_model(name, num_classes=3, backbone_weights=str(weights))
        assert "\n" not in str(err.value)


def _offline(monkeypatch) -> None:
    """The network unreachable: torch.hub's downloads fail as they do without a route."""

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", unreachable)


def test_imagenet_weights_come_from_torchvisions_cache_or_fail_in_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    _offline(monkeypatch)
    file_name = tvm.MobileNet_V3_Large_Weights.DEFAULT.url.rsplit("/", 1)[1]
    with pytest.raises(TsegError) as err:
        get_model("deeplabv3_mobilenet_v3_large", num_classes=3, backbone_weights="imagenet")
    message = str(err.value)
    assert "\n" not in message and file_name in message and str(tmp_path / "checkpoints") in message
    assert "URLError" in message
    assert capfd.readouterr().out == "", "nothing but results on stdout (torch.hub prints 'Downloading: ...')"
    assert not (tmp_path / "checkpoints").exists(), "a failed download leaves nothing behind"
    monkeypatch.undo()

    # Cached: the weights API reads the file from torch's hub folder, no network needed.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    _offline(monkeypatch)
    mobilenet = tvm.mobilenet_v3_large()
    (tmp_path / "checkpoints").mkdir()
    torch.save(mobilenet.state_dict(), tmp_path / "checkpoints" / file_name)
    model = get_model("deeplabv3_mobilenet_v3_large", num_classes=3, backbone_weights="imagenet")
    assert torch.equal(model.backbone["0"][0].weight, mobilenet.features[0][0].weight)
    assert capfd.readouterr().out == ""


def test_an_imagenet_download_prints_nothing_on_stdout(tmp_path, monkeypatch, capfd):
    """A download that works lands in torch's cache without a word on stdout; a wrong hash is one line."""
    import email.message
    import io
    import types

    from tseg.train.models.weights import imagenet_weights

    payload = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, payload)

    class Response(io.BytesIO):
        def info(self):
            headers = email.message.Message()
            headers["Content-Length"] = str(len(payload.getvalue()))
            return headers

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: Response(payload.getvalue()))
    plain = types.SimpleNamespace(DEFAULT=types.SimpleNamespace(url="https://example.invalid/weights/w.pth"))
    assert imagenet_weights(plain) is plain.DEFAULT
    assert (tmp_path / "checkpoints" / "w.pth").read_bytes() == payload.getvalue()
    hashed = types.SimpleNamespace(DEFAULT=types.SimpleNamespace(url="https://example.invalid/weights/r-0123abcd.pth"))
    with pytest.raises(TsegError, match=r"cannot get ImageNet weights r-0123abcd.pth \(RuntimeError\)"):
        imagenet_weights(hashed)  # the payload's sha256 does not start with 0123abcd
    assert not (tmp_path / "checkpoints" / "r-0123abcd.pth").exists()
    assert capfd.readouterr().out == ""


def test_train_cli_with_imagenet_weights_offline_is_one_line_on_stderr(tmp_path, monkeypatch):
    from tseg.train.cli import main as train_cli

    root = tmp_path / "data"
    write_tiny_coco(root, num_train=2, num_val=1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    _offline(monkeypatch)
    result = CliRunner().invoke(train_cli, ["--data", str(root), "--model", "deeplabv3_mobilenet_v3_large",
                                            "--size", "32", "--epochs", "1", "--batch-size", "2",
                                            "--backbone-weights", "imagenet",
                                            "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert result.stdout == "", "nothing but results on stdout"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot get ImageNet weights"), result.stderr
    assert not (tmp_path / "torch").exists(), "a failed download leaves no folder behind"


@pytest.fixture(scope="module")
def two_image_coco(tmp_path_factory):
    """Two training images and one validation image: one optimiser step per epoch."""
    root = tmp_path_factory.mktemp("two_image_coco")
    write_tiny_coco(root, num_train=2, num_val=1)
    return root


@pytest.mark.parametrize("name", _zoo(HEAVY))
def test_cli_trains_every_model_for_a_tiny_epoch(name, two_image_coco, tmp_path):
    from tseg.train.cli import main as train_cli

    args = ["--data", str(two_image_coco), "--model", name, "--size", "32", "--epochs", "1"]
    # SGD without momentum keeps no optimiser state: last.pt stays the size of the weights.
    args += ["--batch-size", "2", "--optimizer", "sgd", "--momentum", "0", "--lr", "1e-4"]
    args += ["--runs-dir", str(tmp_path), "--name", "tiny", "-q"]
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "best.pt").is_file()
