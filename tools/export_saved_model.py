r"""Exports a pretrained ConST-CL backbone (both res5 branches) as a SavedModel.

Example:

  python tools/export_saved_model.py --experiment=const_cl_pretrain_toy \
      --checkpoint=/tmp/const_cl_toy --export_dir=/tmp/const_cl_toy/export

  python -c "import tensorflow as tf, numpy as np; \
      f = tf.saved_model.load('/tmp/const_cl_toy/export').signatures[\
      'serving_default']; \
      print({k: v.shape for k, v in f(clips=tf.zeros([1, 8, 64, 64, 3])).items()})"

The serving signature `serving_default` takes `clips` float32
[B, T, H, W, 3] (RGB in [0, 1]) and returns `global_embedding` (the global
MLP head's L2-normalized projection of the pooled res5g), `res5g_pooled`
[B, C] and `res5r` [B, T', H', W', C]. --checkpoint is a checkpoint prefix or
a trainer model_dir (latest checkpoint). --num_frames / --crop_size default to
the experiment's training clip size; --batch_size 0 leaves the batch size
free.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from modeling import export as export_lib
from tasks import features as features_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', None, 'Registered pretraining experiment.',
                    required=True)
flags.DEFINE_multi_string('config_file', None, 'YAML overrides (strict).')
flags.DEFINE_string('params_override', '', 'a.b=1,c=2 overrides (strict).')
flags.DEFINE_string('checkpoint', None,
                    'Checkpoint prefix or model_dir (-> latest).',
                    required=True)
flags.DEFINE_string('export_dir', None, 'SavedModel output folder.',
                    required=True)
flags.DEFINE_integer('batch_size', 1,
                     'Batch size of the signature; 0 = any batch size.')
flags.DEFINE_integer('num_frames', None, 'Frames per clip (default: '
                     'training clip).')
flags.DEFINE_integer('crop_size', None, 'Clip height = width (default: '
                     'training clip).')
flags.DEFINE_bool('timestamped', False,
                  'Write into <export_dir>/<unix time> (Model Garden style).')


def main(argv):
  del argv
  try:
    params = features_lib.load_experiment_config(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    num_frames, _, crop_size = features_lib.clip_geometry(
        params, FLAGS.num_frames, FLAGS.crop_size)
    model = features_lib.load_pretrained_model(params, FLAGS.checkpoint,
                                               FLAGS.experiment)
    model = features_lib.rebuild_for_clip_size(params, model, num_frames,
                                               crop_size)
    module = export_lib.ConstCLExportModule(
        params, model, num_frames=num_frames, crop_size=crop_size,
        batch_size=FLAGS.batch_size or None)
    path = export_lib.export_saved_model(module, FLAGS.export_dir,
                                         timestamped=FLAGS.timestamped)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  batch = FLAGS.batch_size or 'B'
  print(f'SavedModel -> {path} (serving_default: clips [{batch}, '
        f'{num_frames}, {crop_size}, {crop_size}, 3] -> '
        f'{", ".join(export_lib.SERVING_OUTPUTS)})')
  return 0


if __name__ == '__main__':
  app.run(main)
