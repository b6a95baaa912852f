"""Imports every module that registers something, for `train.py` and tools.

Registration happens at import time (experiments with `exp_factory`, tasks
with `task_factory`, backbones and models with the Model Garden factories);
a test imports this module and checks each registration is there, so a
missing module fails in CI rather than when a user launches a job.
"""
import difflib

from official.core import exp_factory

# pylint: disable=unused-import
from configs import ablations
from configs import action_localization
from configs import backbones
from configs import const_cl
from configs import video_classification
from modeling import action_localization_model
from modeling import classification_model
from modeling import const_cl_model
from modeling.backbones import resnet_3d_y
from tasks import action_localization as action_localization_task
from tasks import pretrain
from tasks import video_classification as video_classification_task
from configs import tracking
from modeling import tracking_model
from tasks import tracking as tracking_task


def check_experiment(experiment: str) -> None:
  """Raises a ValueError naming `experiment` if it is not registered.

  Model Garden's registry raises a LookupError ("collection path ... is
  never registered") from deep in `exp_factory`; this names the flag value
  and the registered names closest to it.
  """
  try:
    exp_factory.get_exp_config(experiment)
    return
  except LookupError:
    pass
  # Only for the hint: the registry's top-level names.
  # pylint: disable-next=protected-access
  names = sorted(exp_factory._REGISTERED_CONFIGS)
  close = difflib.get_close_matches(experiment, names, n=3, cutoff=0.5)
  hint = f'; did you mean {", ".join(close)}?' if close else ''
  raise ValueError(f'unknown experiment {experiment!r} ({len(names)} are '
                   f'registered, e.g. const_cl_pretrain_toy{hint})')
