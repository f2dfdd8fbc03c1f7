"""Publish: release artefacts (compressed images, block maps, manifests, Imager list, signed sums).

`make_release` builds every role image without secrets into dist/; `verify_release` checks a
downloaded release the way a user would (signature, then sums, then the Imager list).
"""

from builder.publish.release import ReleaseRequest, make_release
from builder.publish.verify import verify_release

__all__ = ["ReleaseRequest", "make_release", "verify_release"]
