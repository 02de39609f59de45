import pytest
import torch
import torchvision
from torch import nn

from caltech_transfer.core.errors import UserError
from caltech_transfer.model.checkpoints import load_classifier, load_pretrained, save_checkpoint, write_pretrained
from caltech_transfer.model.factory import build_model, pretrained_backbone


@pytest.mark.parametrize("arch,features", [("resnet18", 512), ("alexnet", 4096), ("timm/tf_efficientnet_lite0", 1280)])
def test_head_is_replaced_for_each_family(arch, features):
    model, prep = build_model(arch, 7)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == features and model.head.out_features == 7
    assert not [m for m in model.backbone.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert model.eval()(images).shape == (2, 7)
    assert model.features(images).shape == (2, features)


def test_preprocessing_follows_the_weights():
    _, tv = build_model("resnet18", 3)
    assert (tv["input_size"], tv["resize_size"], tv["interpolation"]) == (224, 256, "bilinear")
    _, lite = build_model("timm/tf_efficientnet_lite0", 3)
    assert lite["mean"] == [0.5, 0.5, 0.5] and lite["interpolation"] == "bicubic"
    _, small = build_model("resnet18", 3, input_size=112)
    assert (small["input_size"], small["resize_size"]) == (112, 128)
    _, whole = build_model("timm/tf_efficientnet_lite0", 3, input_size=256, crop_pct=1.0)
    assert (whole["input_size"], whole["resize_size"]) == (256, 256)  # the whole cached image, no crop


def test_scratch_may_train_at_its_own_size(tmp_path):
    from caltech_transfer.train.modes import initial_model
    from conftest import scoring_paths, stage_params

    params = stage_params("train_scratch", **{"train.scratch.input_size": 24})
    paths = scoring_paths(tmp_path, tmp_path)  # scratch reads no pretrained weights, no head of another mode
    _, prep = initial_model("scratch", params, ["a", "b"], paths, "pad")
    assert prep["input_size"] == 24


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18().state_dict()  # stands in for the real file, same name and keys
    cached = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(reference, cached)
    model, _ = build_model("resnet18", 5, pretrained_backbone("resnet18", "imagenet"))
    assert torch.equal(model.backbone.conv1.weight, reference["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])
    assert model.head.out_features == 5


def test_unreachable_imagenet_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("network is unreachable"))
    )
    with pytest.raises(UserError, match=r"put that file at .*hub/checkpoints/resnet18-.*\.pth.*model.weights"):
        pretrained_backbone("resnet18", "imagenet")


def test_local_weights_file_with_a_1000_class_head(tmp_path):
    reference = torchvision.models.resnet18().state_dict()
    assert reference["fc.weight"].shape[0] == 1000
    torch.save(reference, tmp_path / "resnet18.pth")
    model, _ = build_model("resnet18", 9, pretrained_backbone("resnet18", str(tmp_path / "resnet18.pth")))
    assert torch.equal(model.backbone.conv1.weight, reference["conv1.weight"])
    assert model.head.out_features == 9


def test_the_same_weights_from_anywhere_are_the_same_bytes(tmp_path, monkeypatch):
    """What the `pretrained` stage writes follows from the values alone: the hub's file and a copy elsewhere in another
    form (a training checkpoint, `module.` prefixes, another head) give one file, so nothing after it reruns."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    reference = torchvision.models.resnet18().state_dict()
    hub = tmp_path / "home" / "hub" / "checkpoints" / torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    hub.parent.mkdir(parents=True)
    torch.save(reference, hub)
    wrapped = {f"module.{k}": v.clone() for k, v in reference.items() if not k.startswith("fc.")}
    torch.save({"state_dict": {**wrapped, "module.fc.weight": torch.zeros(7, 512)}}, tmp_path / "elsewhere.pth")
    write_pretrained("resnet18", "imagenet", tmp_path / "a" / "pretrained.pt")
    write_pretrained("resnet18", str(tmp_path / "elsewhere.pth"), tmp_path / "b" / "pretrained.pt")
    assert (tmp_path / "a" / "pretrained.pt").read_bytes() == (tmp_path / "b" / "pretrained.pt").read_bytes()
    model, _ = build_model("resnet18", 3, load_pretrained(tmp_path / "a" / "pretrained.pt", "resnet18"))
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])
    with pytest.raises(UserError, match="holds weights of resnet18, not model.arch alexnet: run dvc repro"):
        load_pretrained(tmp_path / "a" / "pretrained.pt", "alexnet")


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(UserError, match="do not fit this architecture"):
        pretrained_backbone("resnet18", str(tmp_path / "alexnet.pth"))


@pytest.mark.parametrize(
    "arch,hint",
    [("resnet181", "resnet18"), ("alexnett", "alexnet"), ("timm/tf_efficientnet_lite", "timm/tf_efficientnet_lite0")],
)
def test_unknown_architecture_names_close_matches(arch, hint):
    with pytest.raises(UserError, match=f"close matches: .*{hint}"):
        build_model(arch, 3)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model, prep = build_model("resnet18", 4)
    save_checkpoint(
        {
            "state_dict": model.state_dict(),
            "arch": "resnet18",
            "mode": "scratch",
            "classes": list("abcd"),
            "preprocessing": {**prep, "fit": "pad"},  # as the train stage records it
        },
        tmp_path / "m.pt",
    )
    loaded, ckpt = load_classifier(tmp_path / "m.pt")
    assert ckpt["classes"] == list("abcd")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def saved_bytes(model, images):
    """Bytes of the distinct storages autograd keeps from the forward pass for the backward pass."""
    storages = {}

    def keep(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(images)
    return sum(storages.values())


def test_relu6_keeps_one_activation_for_backward_and_the_same_gradients():
    from caltech_transfer.model.lean_activations import LeanReLU6

    torch.manual_seed(0)
    lean, _ = build_model("timm/tf_efficientnet_lite0", 5)
    assert sum(type(m) is LeanReLU6 for m in lean.modules()) == 33
    plain, _ = build_model("timm/tf_efficientnet_lite0", 5)
    plain.load_state_dict(lean.state_dict())
    for module in plain.modules():
        if type(module) is LeanReLU6:
            module.__class__ = nn.ReLU6  # PyTorch's own
    images = torch.randint(0, 256, (4, 3, 96, 96), dtype=torch.uint8)
    results = []
    for model in (lean, plain):
        model.train().to(memory_format=torch.channels_last)
        loss = model(images).logsumexp(1).sum()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(results[0][1][n], results[1][1][n]) for n in results[0][1])
    assert saved_bytes(lean, images) < 0.85 * saved_bytes(plain, images)
