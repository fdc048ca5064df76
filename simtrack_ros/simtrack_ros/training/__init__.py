"""Fine-tuning (ROS-free): annotated-data samples and augmentation, losses, metrics, trainer."""
