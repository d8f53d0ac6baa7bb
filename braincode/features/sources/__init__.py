"""One module per model library; each exposes ``build(model_id, layers=..., device=...) -> Extractor``."""
