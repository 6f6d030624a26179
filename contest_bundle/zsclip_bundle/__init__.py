"""Build the contest submission archive: model dir + zsclip runtime wheel + every dependency wheel."""

from zsclip_bundle.build import BundleConfig, BundleError, BundleReport, build_bundle

__all__ = ["BundleConfig", "BundleError", "BundleReport", "build_bundle"]
