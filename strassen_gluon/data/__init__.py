"""Data sets: CIFAR-10 loading, checking, download and on-device batches."""
from .batches import CifarBatches, EpochPlan, pad_crop_flip
from .cifar import (CIFAR10_MD5, CIFAR10_URL, CIFAR_MEAN, CIFAR_STD, DEFAULT_DATA_DIR, ENV_VAR,
                    CifarData, CifarDownloadError, CifarFormatError, CifarNotFoundError,
                    download_cifar10, load_cifar10, resolve_data_dir, subset)
