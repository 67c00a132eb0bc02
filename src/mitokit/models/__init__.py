"""Models, one package per formulation; weights saved as safetensors with a JSON config.

- :mod:`mitokit.models.classifier`: patch classifier, tile classifier (BC) and regressor (Reg,
  Reg-NS), ensembles;
- :mod:`mitokit.models.detector`: Faster R-CNN mitosis detector;
- :mod:`mitokit.models.wss`: weakly supervised localiser;
- :mod:`mitokit.models.diffusion`: conditional diffusion model of cell patches.

Shared: :mod:`mitokit.models.checkpoint` (saving, finding and loading model folders),
:mod:`mitokit.models.predictors` (the contract with slide inference),
:mod:`mitokit.models.backbones` (ResNets and local initial weights),
:mod:`mitokit.models.tile_source` (tile images with box labels), :mod:`mitokit.models.inference`
(batch-norm folding).
"""
