"""Datasets, transforms and batch samplers for the accuracy evaluator (no torchvision)."""

from nas.data.datasets import (
                               CifarSource,
                               DataError,
                               FolderSource,
                               ImageDataset,
                               ProceduralSource,
                               collate,
                               download_cifar,
)
from nas.data.sampler import MultiScaleSampler, SingleScaleSampler, batch_sizes, cvnets_sizes

__all__ = ["CifarSource", "DataError", "FolderSource", "ImageDataset", "MultiScaleSampler",
           "ProceduralSource", "SingleScaleSampler", "batch_sizes", "collate", "cvnets_sizes",
           "download_cifar"]
