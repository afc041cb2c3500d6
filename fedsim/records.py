"""Names of the record keys exchanged between server and clients, in one place."""

ARRAYS = "arrays"  # ArrayRecord: global weights (server -> client) or client weights / partial sums
CONFIG = "config"  # ConfigRecord: round, lr, local epochs, seed, client ids, experiment
METRICS = "metrics"  # MetricRecord: num-examples, loss, timings

NUM_EXAMPLES = "num-examples"
LOSS = "loss"
SERVER_ROUND = "server-round"
AGGREGATION = "aggregation"  # 1 + completed aggregations so far (skipped rounds do not count)
CLIENT_IDS = "client-ids"
EXPERIMENT = "experiment"  # the resolved experiment config as JSON text
NUM_CLIENTS_DONE = "num-clients"
ERRORS = "errors"  # ConfigRecord: failure reason -> "Type: message\n<traceback>" of its first client
