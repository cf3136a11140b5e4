"""Non-learned retrieval baselines the fine-tuned descriptors are compared against (paper 004, table 4.2).

These modules use numpy and OpenCV only -- no torch -- although they live beside the training code,
so a baseline can run wherever the runtime runs.
"""
