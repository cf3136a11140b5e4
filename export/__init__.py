"""From a trained run to the museum's bundle: ONNX export, its checks, precision variants.

``graph`` (the exported ``nn.Module``) and ``onnx_export`` need torch; ``contract``, ``engine``
(ONNX Runtime describer), ``onnx_graph`` and ``precision`` do not, so the runtime side can
measure and use exported models without it. ``bundle`` and ``command`` tie the steps together
(``muselens export``). Nothing is imported here, so importing a torch-free module stays torch-free.
"""
