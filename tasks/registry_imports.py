"""Imports every module that registers something, for `train.py` and tools.

Registration happens at import time (experiments with `exp_factory`, tasks
with `task_factory`, backbones and models with the Model Garden factories);
a test imports this module and checks each registration is there, so a
missing module fails in CI rather than when a user launches a job.
"""
# pylint: disable=unused-import
from configs import backbones
from configs import const_cl
from modeling import const_cl_model
from modeling.backbones import resnet_3d_y
from tasks import pretrain
