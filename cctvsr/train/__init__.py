"""Fine-tuning the generator on one site's degradations (`cctvsr finetune`)."""
