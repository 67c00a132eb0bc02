"""Models, one module per formulation; weights saved as safetensors with a JSON config."""
