"""Hydra applications (``experiments/train.py``, ``sample.py``, ``evaluate.py``) and the builders they share.

An importable package, so that scripts build models, optimizers and Trainers exactly as ``train.py`` does
(``from experiments._common import build_model``). The editable install exposes it (pyproject.toml).
"""
