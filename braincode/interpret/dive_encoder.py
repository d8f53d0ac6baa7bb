"""BrainDiVE's guiding encoder: a linear map on the L2-normalised CLIP image embedding, read as the paper does.

The decoded image in [0, 1] is resized **bilinearly** to the CLIP input side (224) with no crop, normalised with
CLIP's mean and standard deviation, embedded by the CLIP image tower, L2-normalised and mapped linearly to voxels
(the authors' ``cond_fn``). The linear map is a BrainSCUBA encoder
(:class:`braincode.interpret.scuba_encoder.LinearEncoder`), so the published brain-guidance scale (130) applies to
the same kind of encoder it was tuned on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from braincode.encoding.torch_encoder import LinearReadout, TorchEncoder
from braincode.errors import DataFormatError
from braincode.features.design import FeatureSpec
from braincode.interpret.scuba_encoder import LinearEncoder


class ClipLinearGuide(TorchEncoder):
    """Images (n, 3, H, W) in [0, 1] -> voxels: bilinear resize, CLIP normalisation, CLIP, L2 norm, linear.

    Build with :meth:`from_encoder`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from braincode.interpret.scuba_encoder import LinearEncoder
    >>> lin = LinearEncoder(np.ones((2, 64), np.float32), np.zeros(2, np.float32), pd.DataFrame({"v": [0, 1]}),
    ...                     model_id="open_clip:tiny-vit@random")
    >>> guide = ClipLinearGuide.from_encoder(lin, device="cpu")
    >>> guide(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 2])
    """

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Bilinear resize to the model's side (no crop) and CLIP normalisation, as BrainDiVE's guidance does."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataFormatError("images must be a batch of RGB tensors", expected="(n, 3, H, W) in [0, 1]",
                                  found=str(tuple(images.shape)))
        if images.shape[-2:] != (self.side, self.side):
            images = F.interpolate(images, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return (images - self.pixel_mean) / self.pixel_std

    @classmethod
    def from_encoder(cls, encoder: LinearEncoder, *, device: str = "auto") -> ClipLinearGuide:
        """The guide of a BrainSCUBA-style encoder (its ``model_id`` must be a CLIP image tower, layer pooled)."""
        from braincode.features import get_extractor

        extractor = get_extractor(encoder.model_id, layers=["pooled"], device=device)
        readout = LinearReadout(encoder.coef, encoder.intercept, l2_normalize=True)
        return cls(extractor, FeatureSpec(encoder.model_id, ("pooled",)), readout, voxels=encoder.voxels)
