"""Test-wide settings: quiet TensorFlow, two logical CPUs for strategy tests."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

# Two logical CPU devices so MirroredStrategy tests can run 2 replicas here.
# This must happen before any test touches a device.
_cpus = tf.config.list_physical_devices('CPU')
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
  pass


@pytest.fixture(scope='session')
def mirrored_strategy():
  """The one MirroredStrategy over the 2 logical CPUs for the whole session.

  A second MirroredStrategy in the same process restarts its collective
  instance keys at the first one's values, with other tensor types, and the
  collectives abort ("Collective instance 100 expected type 0 ... but got
  type 2"), poisoning the process for every later test.
  """
  return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
