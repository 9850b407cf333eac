"""Data sets: CIFAR-10 loading, checking, download and on-device batches."""
from .cifar import (CIFAR10_MD5, CIFAR10_URL, CIFAR_MEAN, CIFAR_STD, DEFAULT_DATA_DIR, ENV_VAR,
                    CifarBatches, CifarData, CifarDownloadError, CifarFormatError,
                    CifarNotFoundError, EpochPlan, download_cifar10, load_cifar10,
                    pad_crop_flip, resolve_data_dir, subset)
