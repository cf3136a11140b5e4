"""The baselines the fine-tuned descriptors are compared against (paper 004, table 4.2).

:mod:`~muselens.training.baselines.imagenet`: global descriptors of the ImageNet backbone, no
fine-tuning (the "IM" methods: MAC, SPoC, GeM, R-MAC, logits; torch).
:mod:`~muselens.training.baselines.sift`: RootSIFT matching with RANSAC (numpy and OpenCV only,
so it runs wherever the runtime runs).
"""
