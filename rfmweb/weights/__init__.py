"""Shipped model weights (package data): ``neumours_adamw.pt``, see ``NEUMOURS_CARD.md``."""
