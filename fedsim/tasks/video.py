"""The video task: self-supervised 3-D CNN pre-training in the FedVSSL setting (arXiv 2207.01975).

Clients hold RGB clips ``(n, 3, frames, size, size)``: by default the generated moving-digit
population of :mod:`fedsim.data.moving_digits` (each client filming with its own camera:
frame rate, brightness, noise), or with ``--data-dir`` a UCF-101-style folder of videos or
frame folders read by :mod:`fedsim.data.video_folders`. The encoder (``r3d_small``,
``r2plus1d_small``) sees **grey** clips ``(n, 1, t, h, w)``: colour is only ever a target,
so one encoder serves every pretext and the colourisation pretext cannot read its answer.

Pretexts (``task.params.pretext``: one name or a list, each weighted by
``task.params.weights``, default 1; the loss is the weighted sum):

* ``order``: clip-order prediction (VCOP, Xu et al. CVPR 2019): ``order_subclips`` sub-clips
  shuffled, the permutation classified (:mod:`fedsim.losses.clip_order`);
* ``speed``: playback-speed prediction (SpeedNet, arXiv 2004.06130): a view sampled with a
  frame stride from ``speeds``, the stride classified (:mod:`fedsim.losses.playback_speed`);
* ``colorize``: colourisation after VCGAN (arXiv 2104.12357): a decoder on the encoder's
  feature map (and the grey input) predicts the chroma of the frames, their luma being the
  grey input; L1 (or MSE, ``colorize_loss``) reconstruction, optionally weighted towards
  colourful pixels (``colorize_rebalance``), plus ``temporal_weight`` × the short- and
  long-term temporal-consistency loss (:mod:`fedsim.losses.colorization`; no optical flow
  and no adversarial term);
* ``contrastive`` (the default; CVRL, arXiv 2008.03800): two temporal crops of each clip
  with independent camera-like jitter are positives under NT-Xent
  (:mod:`fedsim.losses.ntxent`). The only pretext that lifts kNN at the bundled scale: order
  and speed learn their own tasks, but the population's motion is independent of the label;
  colourisation lowers the probe's PSNR below the random-init encoder's
  (docs/reproductions/objectives.md).

Evaluation on held-out clips no client sees: kNN and linear probe on the encoder's clip
features of the central ``eval_frames`` grey frames; with ``colorize`` also the PSNR of the
held-out clips colourised by a decoder probe fitted at evaluation time on the frozen encoder
(``psnr``, :func:`fit_color_probe`: meaningful under any strategy, FedVSSL included, whose
decoder heads stay on the clients) and by the model's own decoder head (``psnr_head``).
Round-0 baselines: kNN on the raw grey pixels; PSNR of the grey input taken as colour (what
an untrained decoder returns).

Each pretext is a registered objective (:mod:`fedsim.objectives`) needing ``rgb_clips``; the
task builds one head per pretext under ``heads.<name>`` and sums the weighted losses.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from fedsim.data import moving_digits
from fedsim.data.augmentations import centre_frames, grey
from fedsim.losses.colorization import psnr
from fedsim.models import build_backbone
from fedsim.objectives import build_objective
from fedsim.objectives.colorize import ColorDecoder
from fedsim.registry import MODELS, register_task
from fedsim.tasks.base import Batch, Metric, TaskContext, TaskParams, TensorDataset
from fedsim.tasks.classification import EvalData, ProbeEvaluation, encode
from fedsim.tasks.folder import FolderTask

Pretext = Literal["order", "speed", "colorize", "contrastive"]
PRETEXTS: tuple[str, ...] = Pretext.__args__
PSNR = Metric("psnr", higher_is_better=True,
              description="PSNR (dB) of held-out clips colourised by a decoder probe fitted on the frozen encoder")
PSNR_HEAD = Metric("psnr_head", higher_is_better=True,
                   description="PSNR (dB) of held-out clips colourised by the model's own decoder head")
PROBE_STEPS = 150  # Adam steps of the colour probe, full batch over the bank clips
PROBE_LR = 1e-2


class VideoParams(TaskParams):
    """Parameters of the video task (``task.params`` in the YAML)."""

    pretext: list[Pretext] = Field(default_factory=lambda: ["contrastive"],
                                   description="pretexts trained together (one name or a list)")
    weights: dict[Pretext, float] = Field(default_factory=dict, description="weight per pretext (default 1)")
    frames: int = Field(12, ge=4, le=64, description="frames per stored clip")
    frame_size: int = Field(16, ge=8, le=128, description="side of the square frames, px (the digits are 8×8)")
    order_subclips: int = Field(3, ge=2, le=4)
    order_frames: int = Field(3, ge=1, description="frames per sub-clip (order)")
    order_gap: int = Field(1, ge=0, description="frames between sub-clips (order)")
    speeds: tuple[int, ...] = Field((1, 2, 3), min_length=2, description="frame strides to tell apart (speed)")
    speed_frames: int = Field(4, ge=2, description="frames per view (speed)")
    colorize_frames: int = Field(8, ge=2, description="frames per colourised view")
    colorize_loss: Literal["l1", "mse"] = Field("l1", description="colour error (colorize): VCGAN's L1 or MSE")
    colorize_rebalance: float = Field(0.0, ge=0.0, description="weight up colourful target pixels: "
                                      "1 + this × their chroma (colorize)")
    temporal_weight: float = Field(1.0, ge=0.0, description="weight of the temporal-consistency loss (colorize)")
    temporal_alpha: float = Field(50.0, gt=0.0, description="sharpness of its visibility mask")
    contrastive_frames: int = Field(6, ge=2, description="frames per view (contrastive)")
    temperature: float = Field(0.2, gt=0.0, description="NT-Xent temperature (contrastive)")
    eval_frames: int = Field(8, ge=2, description="central frames of a held-out clip the encoder sees")
    min_clips: int = Field(24, ge=2, description="smallest client data set")
    max_clips: int = Field(48, ge=2, description="largest client data set")
    camera_strength: float = Field(1.0, ge=0.0, description="spread of the per-client camera conditions")
    distractors: int = Field(0, ge=0, le=moving_digits.MAX_DISTRACTORS,
                             description="distractor digits per clip (generated population)")
    main_digit_size: tuple[float, float] = Field((0.6, 0.8), description="main digit's side, share of the frame")
    background_value: tuple[float, float] = Field((0.1, 0.2), description="background brightness range")
    shading: float = Field(0.0, ge=0.0, le=0.5, description="largest background brightness tilt")
    class_hue_spread: float = Field(0.05, ge=0.0, le=0.5, description="main digit's hue around its class hue")
    eval_samples: int = Field(200, ge=2, description="held-out clips per bank and query set, at most")

    @field_validator("pretext", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> "VideoParams":
        if not self.pretext or len(set(self.pretext)) != len(self.pretext):
            raise ValueError(f"pretext must name each of order, speed, colorize, contrastive at most once (got {self.pretext})")
        unused = sorted(set(self.weights) - set(self.pretext))
        if unused:
            raise ValueError(f"weights given for pretexts not trained: {', '.join(unused)}")
        if self.min_clips > self.max_clips:
            raise ValueError(f"min_clips ({self.min_clips}) is more than max_clips ({self.max_clips})")
        needs = {"order": self.order_subclips * self.order_frames + (self.order_subclips - 1) * self.order_gap,
                 "speed": (self.speed_frames - 1) * max(self.speeds) + 1, "colorize": self.colorize_frames,
                 "contrastive": self.contrastive_frames}
        for name in self.pretext:
            if needs[name] > self.frames:
                raise ValueError(f"pretext {name!r} needs {needs[name]} frames per clip; frames is {self.frames}")
        if self.eval_frames > self.frames:
            raise ValueError(f"eval_frames ({self.eval_frames}) is more than frames ({self.frames})")
        if min(self.speeds) < 1 or len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds must be distinct positive frame strides (got {self.speeds})")
        return self

    def weight(self, name: str) -> float:
        return float(self.weights.get(name, 1.0))  # type: ignore[call-overload]


def fit_color_probe(bank_maps: torch.Tensor, bank_grey: torch.Tensor, bank_rgb: torch.Tensor,
                    seed: int) -> ColorDecoder:
    """A fresh :class:`ColorDecoder` fitted to colour the bank clips from frozen feature maps.

    The evaluation protocol of colourisation as a representation: whatever the strategy did
    with the pretext's decoder (FedVSSL keeps it on the clients, so the server's copy is
    untrained), a decoder probe is fitted at evaluation time on the frozen global encoder's
    maps of the held-out *bank* clips and scored on the query clips, as a linear probe is for
    classification. MSE (the loss PSNR measures), full-batch Adam on the first 3/4 of the bank
    for up to ``PROBE_STEPS`` steps, keeping the step with the lowest MSE on the last 1/4
    (step 0, the untrained decoder, i.e. the grey input, included): a probe on a few hundred
    clips otherwise memorises each clip's colours (measured: bank PSNR 27 dB, query below grey).
    BatchNorm runs in eval mode (a learned affine map). Initialised from ``seed`` only.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = ColorDecoder(bank_maps.shape[1]).eval()
    cut = max(1, len(bank_maps) * 3 // 4)
    fit, val = slice(0, cut), slice(cut, None)
    opt = torch.optim.Adam(probe.parameters(), lr=PROBE_LR)

    def val_mse() -> float:
        with torch.no_grad():
            return float(F.mse_loss(probe(bank_maps[val], bank_grey[val]), bank_rgb[val]))

    best, best_state = val_mse(), copy.deepcopy(probe.state_dict())
    with torch.enable_grad():
        for _ in range(PROBE_STEPS):
            loss = F.mse_loss(probe(bank_maps[fit], bank_grey[fit]), bank_rgb[fit])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (current := val_mse()) < best:
                best, best_state = current, copy.deepcopy(probe.state_dict())
    probe.load_state_dict(best_state)
    return probe


class VideoSSLModel(nn.Module):
    """A 3-D CNN ``backbone`` (the shared encoder) and one head per pretext (kept per client
    by FedVSSL)."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


@register_task("video")
class VideoTask(ProbeEvaluation, FolderTask):
    """Video SSL (clip order, playback speed, VCGAN-style colourisation) on moving digits or a video folder."""

    # measured: docs/reproductions/objectives.md (5 seeds, FedVSSL spec, 20 rounds)
    experimental = {"order": "kNN 0.160 vs init 0.178, raw 0.206 (5 seeds): learns clip order at lr 0.01, "
                             "not the label",
                    "speed": "kNN 0.158 vs init 0.178, raw 0.206 (5 seeds): learns playback speed at lr 0.01, "
                             "not the label",
                    "colorize": "probe PSNR 21.06 dB under FedVSSL, 20.99 under FedAvg vs grey input 20.42, "
                    "random-init encoder 21.25 (a grey-only probe: its maps are ~0; 300 held-out clips); the "
                    "trained maps carry the digit's class hue too weakly"}

    Params = VideoParams
    default_model = "r3d_small"
    views = frozenset({"rgb_clips"})
    sample_key = "video"
    size_params = ("min_clips", "max_clips", "eval_samples")

    def __init__(self, context: TaskContext, params: VideoParams | None = None) -> None:
        super().__init__(context, params or VideoParams())
        self.params: VideoParams
        p = self.params
        # Calibrated (docs/reproductions/fedvssl.md): with distractors, bright shaded backgrounds and
        # half-frame digits nothing learned; the label must dominate a clip at 16 px.
        self._scene = moving_digits.SceneScale(class_hue_spread=p.class_hue_spread, distractors=p.distractors,
                                               main_box=p.main_digit_size, background_value=p.background_value,
                                               shading=p.shading)
        self._camera = moving_digits.CameraScale(strength=p.camera_strength)
        self._eval: EvalData | None = None
        self._eval_rgb: torch.Tensor | None = None
        self.objectives = {name: build_objective(name, self.views, p, head_path=f"heads.{name}")
                           for name in p.pretext}

    # ---- data --------------------------------------------------------------------------

    @staticmethod
    def scan_folder(path: str, *, seed: int) -> Any:
        from fedsim.data.video_folders import scan_video_folder

        return scan_video_folder(path, seed=seed)

    def load_items(self, index: Any, items: np.ndarray) -> torch.Tensor:
        from fedsim.data.video_folders import load_clips

        return load_clips(index, items, frames=self.params.frames, size=self.params.frame_size)

    def generated_samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        return moving_digits.client_clips(
            client_id, seed=self.context.seed, num_clients=self.context.num_clients,
            partitioning=self.context.partitioning, frames=p.frames, size=p.frame_size,
            min_clips=p.min_clips, max_clips=p.max_clips, scene=self._scene, camera=self._camera)

    def generated_held_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.params
        return moving_digits.eval_clips(seed=self.context.seed, frames=p.frames, size=p.frame_size,
                                        per_split=p.eval_samples, scene=self._scene, camera=self._camera)

    def generated_description(self) -> dict[str, Any]:
        return {"population": "moving digits (sklearn digits, per-client cameras)",
                "frames": self.params.frames, "frame_size": self.params.frame_size}

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s RGB ``video`` clips ``(n, 3, frames, size, size)`` (labels stay on the shelf)."""
        clips, _ = self.samples(client_id)
        return TensorDataset({"video": clips})

    # ---- model and losses --------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The 3-D CNN on grey clips plus one head per pretext."""
        name, p = self.context.backbone, self.params
        if MODELS.info(name).input != "video":
            video = [n for n in MODELS.names() if MODELS.info(n).input == "video"]
            raise ValueError(f"model {name!r} takes images; the video task needs a video backbone: "
                             f"{', '.join(video)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            backbone = build_backbone(name, in_channels=1, image_size=p.frame_size,
                                      options=self.context.backbone_options)
            # heads in the declared order of the pretexts (not the order listed): the init order
            heads = {pretext: self.objectives[pretext].head(backbone.out_dim, self)
                     for pretext in PRETEXTS if pretext in self.objectives}
        return VideoSSLModel(backbone, heads)

    def start_local_training(self, model: nn.Module) -> None:
        for objective in self.objectives.values():
            objective.start(model)

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The weighted sum of the pretexts' losses on one batch of RGB clips, in the order listed."""
        total = batch["video"].new_zeros(())
        for name, objective in self.objectives.items():
            total = total + self.params.weight(name) * objective.loss(model, batch, self, generator)
        return total

    # ---- evaluation --------------------------------------------------------------------

    def eval_data(self) -> EvalData:
        """Held-out clips no client sees: the central ``eval_frames`` grey frames."""
        if self._eval is None:
            bank, bank_y, query, query_y = self.held_out()
            f = self.params.eval_frames
            self._eval_rgb = centre_frames(query, f)
            self._bank_rgb = centre_frames(bank, f)
            self._eval = EvalData(grey(centre_frames(bank, f)), bank_y, grey(self._eval_rgb), query_y)
        return self._eval

    def metrics(self) -> tuple[Metric, ...]:
        return (*super().metrics(), *((PSNR, PSNR_HEAD) if "colorize" in self.params.pretext else ()))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """kNN/linear probe; with ``colorize`` the PSNR of a decoder probe fitted on the frozen
        encoder (:func:`fit_color_probe`) and of the model's own decoder head."""
        out = super().evaluate(model)
        if "colorize" in self.params.pretext:
            data = self.eval_data()
            head = encode(lambda m, g: m.heads["colorize"](m.backbone.feature_map(g), g).flatten(1), model, data.query_x)
            out[PSNR_HEAD.name] = float(psnr(head.reshape(self._eval_rgb.shape), self._eval_rgb).mean())
            was_training = model.training
            model.eval()
            with torch.no_grad():
                bank_maps = model.backbone.feature_map(data.bank_x)
                query_maps = model.backbone.feature_map(data.query_x)
            probe = fit_color_probe(bank_maps, data.bank_x, self._bank_rgb, self.context.seed)
            with torch.no_grad():
                pred = probe(query_maps, data.query_x)
            model.train(was_training)
            out[PSNR.name] = float(psnr(pred, self._eval_rgb).mean())
        return out

    def baselines(self) -> dict[str, float]:
        """kNN on raw grey pixels; with ``colorize``, the PSNR of the grey input taken as colour
        (which is also what an untrained :class:`ColorDecoder` returns: its last conv starts at
        zero). The probe fitted on the random-init encoder is the round-0 value of ``psnr``."""
        out = super().baselines()
        if "colorize" in self.params.pretext:
            data = self.eval_data()
            out[f"{PSNR.name}_grey_input"] = float(psnr(data.query_x.expand_as(self._eval_rgb), self._eval_rgb).mean())
        return out
