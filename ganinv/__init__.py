"""ganinv: GAN inversion algorithms in pure PyTorch (no prefect, dask or zarr here)."""

__version__ = "0.1.0"
