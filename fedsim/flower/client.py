"""FedVSSL's client half for any Flower ClientApp: keep some tensors local, send the others.

FedVSSL clients load only the global *backbone*, keep their own head from their previous
participation and send back only the backbone. :func:`keep_local_mod` does this around an
unchanged ClientApp (Flower's quickstart ``train`` function, which loads the whole
``arrays`` record and replies with the whole model):

* on the way in, every tensor the server does not want back is replaced by this node's own
  copy from its last participation (kept in Flower's per-node ``context.state``); on its
  first participation the node starts from the global one;
* on the way out, those tensors are stored in ``context.state`` and removed from the reply.

Which tensors travel is the server's decision: :class:`fedsim.flower.FedVSSL` names their
prefixes in the train config (``fedsim.send-prefix``). A message without that key passes
through untouched, so the mod can stay installed for any strategy. :func:`split_arrays` is
the same split for a ClientApp that handles records itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

from fedsim.flower.strategy import SEND_PREFIX_KEY

LOCAL_STATE_KEY = "fedsim.kept-local"
"""The ``context.state`` ArrayRecord holding this node's local tensors."""


def split_arrays(record: ArrayRecord, send_prefixes: Sequence[str]) -> tuple[ArrayRecord, ArrayRecord]:
    """``(sent, kept)``: the entries of ``record`` whose name starts with one of
    ``send_prefixes``, and the others, in record order."""
    prefixes = tuple(send_prefixes)
    sent = {k: v for k, v in record.items() if k.startswith(prefixes)}
    kept = {k: v for k, v in record.items() if not k.startswith(prefixes)}
    return ArrayRecord(sent), ArrayRecord(kept)


def send_prefixes(msg: Message) -> list[str] | None:
    """The prefixes the server asked this message's reply to send, or ``None`` (send all)."""
    for config in msg.content.config_records.values():
        if SEND_PREFIX_KEY in config:
            value = config[SEND_PREFIX_KEY]
            return [value] if isinstance(value, str) else [str(v) for v in value]  # type: ignore[union-attr]
    return None


def with_local(record: ArrayRecord, local: ArrayRecord | None) -> ArrayRecord:
    """``record`` with each entry this node keeps local replaced by its own copy."""
    if local is None:
        return record
    return ArrayRecord({k: local[k] if k in local else v for k, v in record.items()})


def keep_local_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower ClientApp mod: keep the tensors the server does not ask for on this node.

    Use ``ClientApp(mods=[keep_local_mod])`` or ``@app.train(mods=[keep_local_mod])``.
    """
    prefixes = send_prefixes(msg)
    if prefixes is None:
        return call_next(msg, context)
    local = context.state.array_records.get(LOCAL_STATE_KEY)
    for key, record in list(msg.content.array_records.items()):
        msg.content[key] = with_local(record, local)
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    for key, record in list(reply.content.array_records.items()):
        sent, kept = split_arrays(record, prefixes)
        context.state[LOCAL_STATE_KEY] = kept
        reply.content[key] = sent
    return reply
