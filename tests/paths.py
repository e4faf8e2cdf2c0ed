"""Where the tests find the repository, and the shared data beside it (../shared: an ImageNet sample, weights).

A module of its own for test files to import (conftest.py is pytest's, not a module to import from).
"""
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / 'shared'
SHARED_IMAGENET = SHARED / 'data' / 'imagenet-sample'
MOBILENET_WEIGHTS = SHARED / 'weights' / 'mobilenet_v2_1.0_224_imagenet.weights.h5'
