"""Augmentation of single-cell images and class balancing.

The paper (Sampathila et al. 2022) augmented C-NMC cells with four kinds of change:
vertical and horizontal flips, clockwise and anticlockwise rotation, random brightness,
and random Gaussian blur with added salt-and-pepper noise. This package provides each as
a pure function of ``(image, parameters)``, an :class:`Augmenter` that draws parameters
for the four kinds, and :func:`balance_plan`, which says for every sample of a balanced
training set which original it comes from and which parameters turn it into the copy.

Modules
-------
:mod:`~allnet_core.augment.transforms`
    :func:`flip`, :func:`rotate`, :func:`adjust_brightness`, :func:`gaussian_blur`,
    :func:`salt_and_pepper`, and the conventions they keep (black background, cell mask).
:mod:`~allnet_core.augment.params`
    :data:`PARAM_KEYS`, :func:`parse_params`, :func:`apply_params`: parameters of one
    augmentation are a flat, JSON-serialisable dict, so a plan saved as CSV replays the
    same bytes.
:mod:`~allnet_core.augment.augmenter`
    :class:`Augmenter`, which draws those parameters.
:mod:`~allnet_core.augment.balance`
    :func:`balance_plan`.
:mod:`~allnet_core.augment.balanced_dataset`
    :func:`write_balanced_dataset` (behind ``allnet augment``): a balanced, augmented copy
    of a dataset on disk.
"""

from allnet_core.augment.augmenter import Augmenter
from allnet_core.augment.balance import balance_plan
from allnet_core.augment.balanced_dataset import write_balanced_dataset
from allnet_core.augment.params import PARAM_KEYS, apply_params, parse_params
from allnet_core.augment.transforms import (
    adjust_brightness,
    flip,
    gaussian_blur,
    rotate,
    salt_and_pepper,
)

__all__ = [
    "PARAM_KEYS",
    "Augmenter",
    "adjust_brightness",
    "apply_params",
    "balance_plan",
    "flip",
    "gaussian_blur",
    "parse_params",
    "rotate",
    "salt_and_pepper",
    "write_balanced_dataset",
]
