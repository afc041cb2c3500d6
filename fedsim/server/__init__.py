"""Server side: the round loop, sampling, evaluation, outputs and the Flower ServerApp."""
