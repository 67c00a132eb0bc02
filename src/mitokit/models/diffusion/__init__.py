"""The conditional diffusion model of the first paper: cell patches generated from a score c.

Modules: :mod:`~mitokit.models.diffusion.model` (the conditional UNet, its weight average and
the ``model`` defaults), :mod:`~mitokit.models.diffusion.schedule` (noise schedule, condition
jitter, image scale), :mod:`~mitokit.models.diffusion.data` (patches and their conditions),
:mod:`~mitokit.models.diffusion.task` (the ``diffusion`` task and :func:`load_diffusion`).

Task ``diffusion``: a diffusers :class:`~diffusers.UNet2DModel` denoiser (64x64 by default)
conditioned on a real-valued score ``c`` in [0, 1], the probabilistic label of the cell (the
fraction of raters calling it mitotic, or atypical on AMi-Br). ``c`` is embedded as a
continuous value, not as a class: a sinusoidal projection of ``c * cond_scale`` (the same
projection as the timestep's) goes through a small learned MLP into the UNet's embedding space,
where it is added to the timestep embedding (``class_embed_type="identity"``). A learned
"null" embedding replaces the condition with probability ``cond_dropout`` in training, so one
network gives conditional and unconditional predictions and classifier-free guidance is
available at sampling time (``guidance`` w: ``null + w * (cond - null)``; 1 = no guidance).
``cond_jitter`` w > 0 trains on ``c`` plus uniform noise in [-w, w], reflected into [0, 1]
(:func:`jitter_conditions`): a score from n raters takes only n + 1 values, and the network
never sees the conditions between them; w = 1 / (2n) (0.167 for three raters) fills the gaps,
so a transition's score can rise through them rather than in steps. 0 (default) trains on the
scores as given.

Training runs through the common engine (:mod:`mitokit.engines.train`): the forward process is
the training scheduler's ``add_noise`` (a :class:`~diffusers.DDPMScheduler` of
``num_train_timesteps`` steps, kept as a plain object on the model, not as weights); the loss is
the mean squared error against the noise (``prediction_type: epsilon``) or the velocity
(``v_prediction``). An exponential moving average of the weights (``ema_decay``, with the usual
warm-up ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates) is kept inside the module, as a
frozen copy of the denoiser, so the engine's checkpoints (``state_dict``) carry it, a resumed
run continues it, and DDP ignores it (it has no trainable weights). The engine calls the task's
:meth:`DiffusionTask.after_step` after every optimiser step, which updates the average.
Sampling uses the average (:meth:`DiffusionModel.sampling_net`); generation lives in
:mod:`mitokit.interpret`.

Data (``data`` section): cell patches of any patch label file
(:func:`~mitokit.models.classifier.read_patch_table`: mitokit CSV from ``mitokit synth
patches``, AMi-Br CSV, CSV / COCO naming one patch per object), split by slide as for the patch
classifier. ``condition`` chooses the score:

- ``soft`` (default): the mean rater vote, each rater's repeats averaged first (on AMi-Br: the
  fraction of the three experts calling the figure atypical);
- ``majority``: 1 when the mean vote is above 0.5, else 0;
- any other name: that per-object column of the label file (e.g. ``m``, the latent mitosis
  score of synthetic patches), numbers in [0, 1] or true/false.

Patches are scaled to [-1, 1] and resampled (bilinear, antialiased) to ``sample_size`` inside the
loss when their size differs; with ``augment`` each training patch is flipped / rotated by a
multiple of 90 degrees there too, drawn from torch's generator (which the engine saves, so a
resumed run continues bit for bit on CPU).
"""

from mitokit.models.diffusion.data import CONDITIONS_BUILTIN
from mitokit.models.diffusion.model import (
    MODEL_DEFAULTS,
    PREDICTION_TYPES,
    TINY_MODEL,
    ConditionalUNet,
    DiffusionModel,
    check_model_config,
)
from mitokit.models.diffusion.schedule import (
    build_noise_scheduler,
    from_model_scale,
    jitter_conditions,
    random_dihedral,
    to_model_scale,
)
from mitokit.models.diffusion.task import TASK, DiffusionTask, load_diffusion

__all__ = [
    "CONDITIONS_BUILTIN",
    "MODEL_DEFAULTS",
    "PREDICTION_TYPES",
    "TASK",
    "TINY_MODEL",
    "ConditionalUNet",
    "DiffusionModel",
    "DiffusionTask",
    "build_noise_scheduler",
    "check_model_config",
    "from_model_scale",
    "jitter_conditions",
    "load_diffusion",
    "random_dihedral",
    "to_model_scale",
]
