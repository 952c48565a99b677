"""Image classifiers on [batch, height, width, channels]: `lenet` (LeNet-5), `resnet` (CIFAR-style 6n+2, plain or
residual), `vgg`, `vit` (Vision Transformer over `jaxdl.models.transformer`). Registry keys = module names."""
