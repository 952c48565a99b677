"""Generative image models (Fashion-MNIST scale, images in [0, 1]): `conv_ae` (convolutional autoencoder), `vae`
(Gaussian encoder, Bernoulli decoder), `unet` (the DDPM ε-network), `dcgan` (generator + discriminator). Their
losses and samplers live in the tasks `autoencode`, `vae`, `diffusion`, `gan`. Registry keys = module names."""
