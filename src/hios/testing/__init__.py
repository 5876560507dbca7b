"""Models for tests, shipped so that a separate process (a torchrun rank, a subprocess) can build
them by name: ``hios.testing.dist_models:random_dag``, ``hios.testing.fault_models:noisy``.
Nothing in the library imports them."""
