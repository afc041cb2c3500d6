"""Client side: local training of virtual clients and the Flower ClientApp."""
