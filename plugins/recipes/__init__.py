"""Built-in finetuning recipes (finetune, linear-probe, knn, lp-ft), one module each."""
