"""Built-in vecaf-bench plugins, registered through the `vecaf_bench` entry-point group."""
