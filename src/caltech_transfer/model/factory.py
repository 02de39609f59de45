"""The model factory: an architecture name and its pretrained backbone's weights become a Classifier with a new head.

`resnet18`, `alexnet`, ... name torchvision models; `timm/<name>` names a timm model. `pretrained_backbone` fetches
the weights `model.weights` names: `imagenet` (the library's own pretrained weights, fetched and cached as that
library does), `none` (random init), or a path to a state_dict in the architecture's key names (a 1000-class head is
dropped). The `pretrained` stage writes them in one form, so that where they came from is not part of any result."""

import difflib
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..core.errors import UserError
from .lean_activations import keep_outputs_for_backward

TIMM_PREFIX = "timm/"
IMAGENET_PREP = {
    "input_size": 224,
    "resize_size": 256,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "interpolation": "bilinear",
}


class Classifier(nn.Module):
    """uint8 (or 0-255 float) images -> normalised -> backbone features -> new linear head."""

    def __init__(self, backbone, head, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def features(self, images):
        return self.backbone((images.float() - self.mean) / self.std)

    def forward(self, images):
        return self.head(self.features(images))


def torchvision_archs():
    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch):
    """Raise a UserError naming close matches when `arch` is not a known architecture."""
    if arch.startswith(TIMM_PREFIX):
        import timm

        known = timm.list_models()
        name = arch[len(TIMM_PREFIX) :]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5)
            raise UserError(
                f"unknown timm model {name!r}"
                + (
                    f"; close matches: {', '.join(TIMM_PREFIX + c for c in close)}"
                    if close
                    else "; see timm.list_models()"
                )
            )
        return
    known = torchvision_archs()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        raise UserError(
            f"unknown architecture {arch!r}; close matches: {', '.join(close) or 'none'}. "
            f"Valid: any of torchvision's {len(known)} classification models (e.g. resnet18, alexnet, "
            f"efficientnet_b0) or timm/<name> for a timm model"
        )


def _strip_module_prefix(state):
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_file(model, path, head_name):
    # By hand rather than through timm's pretrained_cfg_overlay: one loader, and one set of messages, for
    # torchvision and timm models alike.
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"model.weights {path} is not a file; use imagenet, none, or a state_dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read weights file {path}: {str(err).splitlines()[0]}") from None
    _load_backbone(model, _strip_module_prefix(state), head_name, str(path))


def _load_backbone(model, state, head_name, origin):
    """Load every weight but the old head's; refuse a file that does not fit the architecture."""
    state = {k: v for k, v in state.items() if not k.startswith(head_name + ".")}
    own = model.state_dict()
    reshaped = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if reshaped:
        key = reshaped[0]
        raise UserError(
            f"weights {origin} do not fit this architecture: {len(reshaped)} tensors have other shapes (e.g. {key}: "
            f"{tuple(state[key].shape)} in the file, {tuple(own[key].shape)} here); give weights of model.arch"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head_name + ".")]
    if missing or result.unexpected_keys:
        raise UserError(
            f"weights {origin} do not fit this architecture: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:2]})"
        )


def _last_linear(model):
    """Name of the final Linear layer: ResNet `fc`, AlexNet/VGG/EfficientNet/MobileNet `classifier.N`, ..."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise UserError(f"{type(model).__name__} has no linear classifier head to replace")
    return names[-1]


def _replace(model, dotted, new):
    parent = model.get_submodule(dotted.rpartition(".")[0]) if "." in dotted else model
    setattr(parent, dotted.rpartition(".")[2], new)


def _torchvision(arch, weights):
    tv_weights = None
    try:
        tv_weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        pass
    if weights == "imagenet" and tv_weights is None:
        raise UserError(f"torchvision has no ImageNet weights for {arch}; use model.weights: none or a file")
    model = torchvision.models.get_model(arch, weights=None)
    head_name = _last_linear(model)
    if weights == "imagenet":
        try:
            state = tv_weights.get_state_dict(progress=True, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            target = Path(torch.hub.get_dir()) / "checkpoints" / Path(tv_weights.url).name
            raise UserError(
                f"could not fetch ImageNet weights for {arch} from {tv_weights.url} ({err}); "
                f"put that file at {target}, or set model.weights to a local state_dict file"
            ) from None
        _load_backbone(model, state, head_name, tv_weights.url)
    elif weights != "none":
        _load_file(model, weights, head_name)
    prep = dict(IMAGENET_PREP)
    if tv_weights is not None:
        t = tv_weights.transforms()
        prep = {
            "input_size": t.crop_size[0],
            "resize_size": t.resize_size[0],
            "mean": list(t.mean),
            "std": list(t.std),
            "interpolation": t.interpolation.value,
        }
    in_features = model.get_submodule(head_name).in_features
    _replace(model, head_name, nn.Identity())
    return model, in_features, prep


def _timm(arch, weights):
    import timm
    import timm.data

    name = arch[len(TIMM_PREFIX) :]
    try:
        model = timm.create_model(name, pretrained=weights == "imagenet")
    except Exception as err:  # hub errors come in many types
        if weights != "imagenet":
            raise
        raise UserError(
            f"could not fetch ImageNet weights for timm model {name} ({str(err).splitlines()[0]}); "
            "download them once and set model.weights to the local state_dict file"
        ) from None
    if weights not in ("imagenet", "none"):
        _load_file(model, weights, model.pretrained_cfg.get("classifier", "classifier"))
    cfg = timm.data.resolve_model_data_config(model)
    input_size = cfg["input_size"][-1]
    prep = {
        "input_size": input_size,
        "resize_size": int(input_size / cfg["crop_pct"]),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "interpolation": cfg["interpolation"],
    }
    model.reset_classifier(0)
    return model, model.num_features, prep


def check_input_size(model, size, arch):
    """Refuse an input size that the architecture's downsampling shrinks to nothing, before any work: one image
    through the backbone, in eval mode and without gradients, so nothing of the model or of the random state moves."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.features(torch.zeros(1, 3, size, size))
    except RuntimeError as err:
        raise UserError(
            f"{size} px (model.input_size, or train.scratch.input_size for scratch) is too small for {arch}: "
            f"{str(err).splitlines()[0][:120]}; use a larger input size"
        ) from None
    finally:
        model.train(was_training)


def pretrained_backbone(arch, weights):
    """The backbone weights `weights` names for `arch`, without the ImageNet head, as one state_dict whose bytes
    follow from the values alone (each tensor its own contiguous storage). For `none`, a random initialisation drawn
    from seed 0, so that the features stage and every mode that starts from these weights share one backbone."""
    check_arch(arch)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        backbone, _, _ = _library_model(arch, weights)
    return {key: value.clone().contiguous() for key, value in backbone.state_dict().items()}


def _library_model(arch, weights):
    return (_timm if arch.startswith(TIMM_PREFIX) else _torchvision)(arch, weights)


def build_model(arch, num_classes, backbone_state=None, input_size=None, crop_pct=None):
    """(Classifier with a fresh `num_classes` head, preprocessing dict that follows the architecture's weights), its
    backbone from `backbone_state` (`pretrained_backbone`'s), else random. `input_size` overrides the weights' input
    size, `crop_pct` the fraction of the image the evaluation's centre crop keeps (1.0: all of it); each defaults to
    the weights' own."""
    check_arch(arch)
    backbone, in_features, prep = _library_model(arch, "none")
    if backbone_state is not None:
        backbone.load_state_dict(backbone_state)
    crop_pct = crop_pct or prep["input_size"] / prep["resize_size"]
    input_size = input_size or prep["input_size"]
    prep.update(input_size=input_size, resize_size=round(input_size / crop_pct))
    backbone = keep_outputs_for_backward(backbone)
    return Classifier(backbone, nn.Linear(in_features, num_classes), prep["mean"], prep["std"]), prep
