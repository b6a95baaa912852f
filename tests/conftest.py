"""Test-wide settings: quiet TensorFlow, two logical CPUs for strategy tests."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

# Two logical CPU devices so MirroredStrategy tests can run 2 replicas here.
# This must happen before any test touches a device.
_cpus = tf.config.list_physical_devices('CPU')
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
  pass
