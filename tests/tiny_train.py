"""The smallest real training run the tests use: a 64x64 network from random weights on 16 LSP images."""

TINY_TRAIN = [
    "model.backbone_init=random", "model.input_size=[64, 64]", "model.heatmap_size=[16, 16]",
    "model.deconv_filters=16",
    "data.train=[{kind: lsp, path: data/lsp, split: train, limit: 16}]",
    "data.val=[{kind: lsp, path: data/lsp, split: test, limit: 8, crop: full_image}]",
    "train.batch_size=8", "train.progress=false", "train.threads=1",
]
