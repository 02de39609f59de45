"""What each training mode means, in one table: where the weights come from, which parts train at which
learning rate, whether the backbone is frozen, and which data feeds the network that trains. The training
loop reads this table and nothing else about modes.

- finetune: pretrained backbone at train.finetune_lr, new head at train.head_lr; the head may train alone
  for the first `train.finetune.freeze_epochs` epochs, or start from the head feature_extract trained
  (`train.finetune.init_head: feature_extract`, LP-FT: Kumar et al. 2022);
- scratch: random init, everything at train.scratch_lr;
- feature_extract: pretrained backbone frozen (BatchNorm statistics included), the head at
  train.feature_extract_lr, trained on backbone features computed once (on augmented images every epoch
  with `train.feature_extract.augment: true`)."""

from dataclasses import dataclass

from torch.utils.data import TensorDataset

from ..batches.datasets import CachedImages, eval_batches, eval_transform, make_loader, train_transform
from ..batches.device_batches import DeviceBatches, fits_on_device
from ..core.errors import UserError
from ..data.split import training_splits
from ..model.checkpoints import load_checkpoint, load_pretrained
from ..model.factory import build_model, check_input_size
from .distributed import ShardedSampler, per_process, wrap
from .features import read_features


@dataclass(frozen=True)
class Mode:
    pretrained: bool  # start from the backbone weights model.weights names (data/pretrained.pt); else random init
    learning_rates: dict  # part of the model (backbone, head) -> its learning-rate key in train.*
    frozen: bool = False  # the backbone never trains and its BatchNorm keeps its statistics

    def backbone_frozen(self, epoch, recipe):
        return self.frozen or epoch < recipe.get("freeze_epochs", 0)

    def features_once(self, recipe):
        """A frozen backbone gives the same features every epoch unless its input is augmented."""
        return self.frozen and not recipe.get("augment", False)


MODES = {
    "finetune": Mode(pretrained=True, learning_rates={"backbone": "finetune_lr", "head": "head_lr"}),
    "scratch": Mode(pretrained=False, learning_rates={"backbone": "scratch_lr", "head": "scratch_lr"}),
    "feature_extract": Mode(pretrained=True, learning_rates={"head": "feature_extract_lr"}, frozen=True),
}


def initial_model(mode, params, classes, paths, fit):
    """(model, preprocessing) as the mode starts: pretrained or random weights, and the head of another mode's
    checkpoint where the recipe's `init_head` names one (a linear probe first, then fine-tuning: LP-FT). The
    preprocessing includes how the cache fitted images to squares (`fit`), so that `caltech-predict` fits new
    images as training saw them."""
    m, recipe = params["model"], params["train"][mode]
    model, prep = build_model(
        m["arch"],
        len(classes),
        load_pretrained(paths.pretrained, m["arch"]) if MODES[mode].pretrained else None,
        recipe.get("input_size") or m["input_size"],  # scratch may train smaller
        m["crop_pct"],
    )
    check_input_size(model, prep["input_size"], m["arch"])
    prep = {**prep, "fit": fit}
    source = recipe.get("init_head", "none")
    if source != "none":
        path = paths.checkpoint.parent / f"{source}.pt"
        ckpt = load_checkpoint(path)
        if ckpt["mode"] != source:
            raise UserError(
                f"train.{mode}.init_head: {source} needs {path}, which holds a {ckpt['mode']} model: "
                f"restore it (dvc checkout {path}) or train it again (dvc repro -f train_{source})"
            )
        if ckpt["params"]["model"] != m or ckpt["classes"] != classes:
            raise UserError(
                f"train.{mode}.init_head: {source} needs {path} trained with the same model.* params and classes: "
                "run dvc repro, or set init_head: none"
            )
        model.head.load_state_dict(
            {k.removeprefix("head."): v for k, v in ckpt["state_dict"].items() if k.startswith("head.")}
        )
    return model, prep


def param_groups(mode, model, train_params):
    """The optimizer's parameter groups; freezes the backbone for good where the mode says so."""
    spec = MODES[mode]
    if spec.frozen:
        model.backbone.requires_grad_(False)
    return [
        {"name": part, "params": list(getattr(model, part).parameters()), "lr": train_params[key]}
        for part, key in spec.learning_rates.items()
    ]


def set_trainable(mode, model, learner, epoch, recipe):
    """Train mode for the learner; a frozen backbone gets no gradients and keeps its BatchNorm statistics."""
    frozen = MODES[mode].backbone_frozen(epoch, recipe)
    learner.train()
    if frozen and learner is model:
        model.backbone.eval()
    if not MODES[mode].frozen:
        model.backbone.requires_grad_(not frozen)


def loaders(mode, model, prep, params, paths, runtime, generator):
    """(learner, train batches, val batches) of this process. The learner is the part of the model that learns from the
    batches: the whole model on images, from loader processes or, with train.data_path device (auto: on a GPU the
    cache fits), cut and augmented on the device; or, where the backbone gives the same features every epoch, the
    head alone on those features, which the features stage computed once per cached image. Under torchrun each
    process gets its share of every split (`distributed.ShardedSampler`). With `train.final_fit` the validation
    images train too, and there are no val batches (None)."""
    recipe, workers, augment = params["train"][mode], params["train"]["workers"], params["augment"]
    final_fit = params["train"]["final_fit"]
    features_once = MODES[mode].features_once(recipe)
    auto_augment = recipe.get("auto_augment", "none")
    transform = (
        eval_transform(prep)
        if features_once
        else train_transform(prep, augment, recipe["crop_scale_min"], auto_augment)
    )
    train_images = CachedImages(
        paths.cache, paths.split, training_splits(final_fit), transform, per_class=paths.train_per_class
    )
    val_images = None if final_fit else CachedImages(paths.cache, paths.split, "val", eval_transform(prep))
    batch = per_process(recipe["batch_size"])
    shuffled = ShardedSampler(len(train_images), generator, shuffle=True)  # the engine seeds `generator` per epoch
    in_order = None if final_fit else ShardedSampler(len(val_images))
    if features_once:
        model.eval()
        train_set, val_set = (stored_features(paths.features, params, prep, i) for i in (train_images, val_images))
        return (
            model.head,
            make_loader(train_set, batch, sampler=shuffled, training=True),
            None if final_fit else make_loader(val_set, batch, sampler=in_order),
        )
    if use_device_path(params["train"]["data_path"], train_images, val_images, runtime.device, auto_augment):
        common = dict(
            batch_size=batch,
            device=runtime.device,
            size=prep["input_size"],
            crop_fraction=prep["input_size"] / prep["resize_size"],
        )
        return (
            model,
            DeviceBatches(
                train_images,
                train=True,
                sampler=shuffled,
                scale_min=recipe["crop_scale_min"],
                hflip=augment["hflip"],
                generator=generator,
                **common,
            ),
            None if final_fit else DeviceBatches(val_images, train=False, sampler=in_order, **common),
        )
    return (
        model,
        # in loader processes each image's crop and flip come from a seed of its own, whichever process reads it
        make_loader(
            train_images, batch, workers, ShardedSampler(len(train_images), generator, True, keyed=True), training=True
        ),
        None if final_fit else eval_batches(val_images, prep, batch, workers, sampler=in_order),
    )


def stored_features(features_dir, params, prep, images):
    """The features stage's values of `images` (None for none) with their labels."""
    if images is None:
        return None
    return TensorDataset(read_features(features_dir, params["model"]["arch"], prep, images.rows), images.labels)


def training_network(mode, learner, recipe, runtime):
    """The learner as the training steps run it: itself, or under torchrun its DDP wrapper; compiled if asked."""
    return runtime.compiled(
        wrap(
            learner,
            runtime.device,
            batchnorm_trains=not MODES[mode].frozen,
            some_frozen_epochs=recipe.get("freeze_epochs", 0) > 0,
        )
    )


def use_device_path(choice, train_images, val_images, device, auto_augment="none"):
    """The device path cuts batched crops and flips only; TrivialAugment's per-image operations run in the loader."""
    if choice == "device" and auto_augment != "none":
        raise UserError(
            f"train.data_path: device has no per-image augmentation (auto_augment: {auto_augment}): "
            "set train.data_path: auto or loader"
        )
    if choice == "auto":
        return (
            device == "cuda"
            and auto_augment == "none"
            and fits_on_device(train_images.nbytes + (val_images.nbytes if val_images else 0), device)
        )
    return choice == "device"
