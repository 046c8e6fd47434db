"""Metrics for renderers and models.

- :mod:`rfmweb.metrics.image`: PSNR, SSIM, MS-SSIM, LPIPS (re-exported here).
- :mod:`rfmweb.metrics.segmentation`: Dice and HD95 for BraTS label maps (import it from there;
  it needs scipy, so it is not imported with the package).
"""

from .image import (ImageMetrics, MetricUnavailable, lpips, lpips_status, ms_ssim, ms_ssim_min_size, psnr, ssim,
                    to_nchw)

__all__ = ["ImageMetrics", "MetricUnavailable", "lpips", "lpips_status", "ms_ssim", "ms_ssim_min_size", "psnr",
           "ssim", "to_nchw"]
