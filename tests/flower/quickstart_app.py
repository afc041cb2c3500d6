"""A Flower app written the way Flower's quickstart-pytorch example is (task, ClientApp,
ServerApp), using fedsim's strategies and nothing else of fedsim: no launcher, no records.

The ServerApp runs L-DAWA, then FedVSSL, on the same Grid (one simulation, one Ray start)
and leaves each strategy's Result and the replies it aggregated in ``RESULTS`` (the ServerApp
runs in the test's process)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsim.flower import LDAWA, FedVSSL, keep_local_mod

RESULTS: dict[str, dict] = {}
ROUNDS = {"ldawa": 3, "fedvssl": 2}


# --- task.py --------------------------------------------------------------------------
class Net(nn.Module):
    """A backbone and a head (FedVSSL keeps the head on the clients)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def initial_model() -> Net:
    torch.manual_seed(0)
    return Net()


def load_data(partition_id: int, num_partitions: int) -> DataLoader:
    g = torch.Generator().manual_seed(1000 + partition_id)
    x = torch.randn(32 + 8 * partition_id, 8, generator=g)
    y = (x[:, 0] + 0.5 * partition_id > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def train_fn(net: Net, loader: DataLoader, epochs: int, lr: float) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    total, batches = 0.0, 0
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
    return total / batches


def test_fn(net: Net, loader: DataLoader) -> tuple[float, float]:
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            out = net(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    n = len(loader.dataset)
    return loss / n, correct / n


# --- client_app.py --------------------------------------------------------------------
client_app = ClientApp(mods=[keep_local_mod])  # keep_local_mod: FedVSSL's client half


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    own_head = float(not torch.equal(model.head.weight, initial_model().head.weight))
    loader = load_data(context.node_config["partition-id"], context.node_config["num-partitions"])
    train_loss = train_fn(model, loader, 1, msg.content["config"]["lr"])
    metrics = {"train_loss": train_loss, "own-head": own_head, "num-examples": len(loader.dataset)}
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loader = load_data(context.node_config["partition-id"], context.node_config["num-partitions"])
    eval_loss, eval_acc = test_fn(model, loader)
    metrics = {"eval_loss": eval_loss, "eval_acc": eval_acc, "num-examples": len(loader.dataset)}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


# --- server_app.py --------------------------------------------------------------------
def recording(cls: type, name: str) -> type:
    """``cls`` that also keeps each round's previous global and replies, in node order (for the test)."""

    class Recording(cls):  # type: ignore[misc, valid-type]
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            by_node = sorted(replies, key=lambda m: m.metadata.src_node_id)  # the strategy's order
            RESULTS[name].setdefault("rounds", []).append((self.previous, [m.content for m in by_node]))
            return super().aggregate_train(server_round, replies)

    return Recording


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    for name, cls, params in (("ldawa", LDAWA, {"warmup_rounds": 1}), ("fedvssl", FedVSSL, {})):
        RESULTS[name] = {}
        strategy = recording(cls, name)(fraction_train=1.0, min_train_nodes=2, min_available_nodes=2, **params)
        arrays = ArrayRecord(initial_model().state_dict())
        result = strategy.start(grid=grid, initial_arrays=arrays, train_config=ConfigRecord({"lr": 0.1}),
                                num_rounds=ROUNDS[name], evaluate_fn=lambda rnd, a: MetricRecord({"round": rnd}))
        RESULTS[name]["result"] = result
