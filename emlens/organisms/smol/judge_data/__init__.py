"""Labelled data of the smol judge and the script that builds it (``python -m
emlens.organisms.smol.judge_data.build``)."""
