"""Tasks whose clients hold generated data or, with ``--data-dir``, the items of a folder.

The image, audio and video tasks differ in what they generate and how they read a file, not
in how a folder is shared out: :class:`FolderTask` owns that choice once. A subclass names
its folder reader (:attr:`FolderTask.scan_folder`, :meth:`FolderTask.load_items`), its
generated population (:meth:`FolderTask.generated_samples`, :meth:`FolderTask.generated_held_out`,
:meth:`FolderTask.generated_description`, :attr:`FolderTask.generated_classes`) and the names
of its size parameters; it then reads :meth:`FolderTask.samples`, :meth:`FolderTask.held_out`
and ``describe_data`` without ever asking which source it has.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from fedsim.data.folder_clients import FolderClients
from fedsim.tasks.base import Task, TaskContext, TaskParams

Tensors4 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class FolderTask(Task):
    """A :class:`Task` over a generated population or a ``--data-dir`` folder
    (:class:`fedsim.data.folder_clients.FolderClients`: partitioning, sampling, held-out split)."""

    reads_data_dir = True
    size_params: ClassVar[tuple[str, str, str]] = ("min_samples", "max_samples", "eval_samples")
    """Names of the task parameters: smallest and largest client data set, held-out items per split."""
    generated_classes: ClassVar[int] = 0
    """Classes of the generated population."""

    def __init__(self, context: TaskContext, params: TaskParams) -> None:
        super().__init__(context, params)
        lo, hi, held = (getattr(params, name) for name in self.size_params)
        # scan_folder is looked up on the class: a plain function, so the per-process index cache hits
        self._folder = None if context.data_dir is None else FolderClients(
            context.data_dir, scan=type(self).scan_folder, load=self.load_items, seed=context.seed,
            num_clients=context.num_clients, partitioning=context.partitioning,
            min_samples=lo, max_samples=hi, eval_samples=held)

    # ---- what a subclass provides --------------------------------------------------------

    @staticmethod
    def scan_folder(path: str, *, seed: int) -> Any:
        """Index the folder at ``path`` (names and labels, no samples)."""
        raise NotImplementedError

    def load_items(self, index: Any, items: np.ndarray) -> torch.Tensor:
        """The samples of item ids ``items`` of ``index``, stacked along dim 0."""
        raise NotImplementedError

    def generated_samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Client ``client_id``'s generated samples and labels."""
        raise NotImplementedError

    def generated_held_out(self) -> Tensors4:
        """Generated held-out ``(bank_x, bank_y, query_x, query_y)``."""
        raise NotImplementedError

    def generated_description(self) -> dict[str, Any]:
        """What ``describe_data`` says of the generated population (besides its source)."""
        return {}

    # ---- what it gets --------------------------------------------------------------------

    def samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Client ``client_id``'s samples and labels, from the folder or generated."""
        if self._folder is not None:
            return self._folder.client_samples(client_id)
        return self.generated_samples(client_id)

    def held_out(self) -> Tensors4:
        """Held-out ``(bank_x, bank_y, query_x, query_y)`` no client holds."""
        return self.generated_held_out() if self._folder is None else self._folder.eval_tensors()

    @property
    def num_classes(self) -> int:
        return self.generated_classes if self._folder is None else self._folder.index.num_classes

    def describe_data(self) -> dict[str, Any]:
        """The generated population, or the folder's layout, sizes and held-out items."""
        if self._folder is None:
            return {"source": "generated", **self.generated_description()}
        return {"source": "folder", **self._folder.describe()}
