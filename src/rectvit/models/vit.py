"""ViT family (filled in by the ViT issue)."""
