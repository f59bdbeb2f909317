"""The ERC evaluation of the quality model (error-versus-reject curves, Grother & Tabassi):
datasets and face tables, matchers, baselines, the curve arithmetic, the skin-tone analysis,
the quality evidence of the model card. Nothing here runs on a camera or in the vault."""
