"""Built-in OOD shift generators: `corruption` (ImageNet-C corruptions of the run's test split)
and `domain` (another dataset, mapped onto the run's classes)."""
