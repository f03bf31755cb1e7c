"""The training runs the tests use: the smallest real one (a 64x64 network from random weights on 16 LSP images)
and a short one that must overfit."""

TINY_TRAIN = [
    "model.backbone_init=random", "model.input_size=[64, 64]", "model.heatmap_size=[16, 16]",
    "model.deconv_filters=16",
    "data.train=[{kind: lsp, path: data/lsp, split: train, limit: 16}]",
    "data.val=[{kind: lsp, path: data/lsp, split: test, limit: 8, crop: full_image}]",
    "train.batch_size=8", "train.progress=false", "train.threads=1",
]

# A short run that must overfit: 64 LSP train images, ImageNet MobileNetV2 at 128x128, validated on the same
# images once at the end (tests/integration/test_train_overfit.py).
OVERFIT_EPOCHS = 10
OVERFIT_TRAIN = [
    "model.input_size=[128, 128]", "model.heatmap_size=[32, 32]", "model.deconv_filters=64",
    "data.train=[{kind: lsp, path: data/lsp, split: train, limit: 64}]",
    "data.val=[{kind: lsp, path: data/lsp, split: train, limit: 64}]",
    "augment.preset=none", "optim.lr_milestones=[]", "train.batch_size=16", "train.progress=false",
    "train.threads=2", "eval.batch_size=64", f"train.epochs={OVERFIT_EPOCHS}",
    f"train.val_every={OVERFIT_EPOCHS}",  # validate once, at the end; the starting PCK is measured apart
]
