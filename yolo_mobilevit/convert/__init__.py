"""Weight conversion from reference implementations (timm, ml-cvnets, torchvision) to plugin checkpoints."""
