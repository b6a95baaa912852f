r"""Writes pretrained ConST-CL features for every video of a dataset.

Examples:

  # Toy world validation split, pooled res5g, one .npy per video:
  python tools/extract_features.py --experiment=const_cl_pretrain_toy \
      --checkpoint=/tmp/const_cl_toy \
      --input_pattern='/root/.cache/const_cl/toy_world/*/validation-*' \
      --output_dir=/tmp/features

  # A folder of video files, dense res5r maps of 3 clips each, as TFRecords:
  python tools/extract_features.py --experiment=const_cl_pretrain_toy \
      --checkpoint=/tmp/const_cl_toy --video_dir=/data/videos \
      --endpoint=res5r --num_clips=3 --format=tfrecord --output_dir=/tmp/f

  # Pooled res5g of a randomly initialized model, labelled, as TFRecords
  # (the baseline of tools/probe_features.py):
  python tools/extract_features.py --experiment=const_cl_pretrain_toy \
      --random_init --seed=0 --format=tfrecord --num_clips=2 \
      --input_pattern='/root/.cache/const_cl/toy_world/*/train-*' \
      --output_dir=/tmp/f_random_train

Each video gives an array [num_clips, ...] (clips evenly spaced, centre crop,
the experiment's clip size and stride): `res5g_pooled` [K, C],
`global_embedding` [K, P], `res5r` [K, T', H', W', C]. npy files are named by
`clip/id` (or `<shard>_<index>`, or the video file name); the TFRecord format
writes `<output_dir>/<endpoint>.tfrecord` with one tf.train.Example per video
(`clip/id`, `features` flattened, `features/shape`, `clip/label/index`).
Videos that cannot be read are skipped, counted and logged.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tf_keras

from modeling import export as export_lib
from tasks import features as features_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', None, 'Registered pretraining experiment.',
                    required=True)
flags.DEFINE_multi_string('config_file', None, 'YAML overrides (strict).')
flags.DEFINE_string('params_override', '', 'a.b=1,c=2 overrides (strict).')
flags.DEFINE_string('checkpoint', None,
                    'Checkpoint prefix or model_dir (-> latest).')
flags.DEFINE_bool('random_init', False,
                  'No checkpoint: the randomly initialized model (the '
                  'baseline of a probe), its initializers seeded by --seed.')
flags.DEFINE_integer('seed', 0, 'Seed of the initializers for --random_init '
                     '(tf_keras.utils.set_random_seed).')
flags.DEFINE_string('input_pattern', None, 'Glob of video TFRecords.')
flags.DEFINE_string('video_dir', None, 'Folder of video files (cv2).')
flags.DEFINE_string('output_dir', None, 'Output folder.', required=True)
flags.DEFINE_enum('format', 'npy', list(features_lib.FORMATS),
                  'One .npy per video, or one TFRecord file.')
flags.DEFINE_enum('endpoint', 'res5g_pooled', list(features_lib.ENDPOINTS),
                  'Which feature to write.')
flags.DEFINE_integer('num_clips', 1, 'Clips per video.')
flags.DEFINE_integer('num_frames', None, 'Frames per clip (default: '
                     'training clip).')
flags.DEFINE_integer('crop_size', None, 'Crop size (default: training clip).')


def main(argv):
  del argv
  if bool(FLAGS.input_pattern) == bool(FLAGS.video_dir):
    print('error: give exactly one of --input_pattern and --video_dir',
          file=sys.stderr)
    return 2
  if bool(FLAGS.checkpoint) == FLAGS.random_init:
    print('error: give exactly one of --checkpoint and --random_init',
          file=sys.stderr)
    return 2
  try:
    params = features_lib.load_experiment_config(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    num_frames, stride, crop_size = features_lib.clip_geometry(
        params, FLAGS.num_frames, FLAGS.crop_size)
    if FLAGS.input_pattern:
      total = features_lib.count_records(FLAGS.input_pattern)
      videos = features_lib.iter_tfrecord_videos(FLAGS.input_pattern)
    else:
      paths = features_lib.list_video_files(FLAGS.video_dir)
      total = len(paths)
      videos = features_lib.iter_video_files(paths)
    if FLAGS.random_init:
      # Seeds Python, NumPy and TF, which the Keras initializers draw from.
      tf_keras.utils.set_random_seed(FLAGS.seed)
      model = features_lib.build_pretrain_model(params)
    else:
      model = features_lib.load_pretrained_model(params, FLAGS.checkpoint,
                                                 FLAGS.experiment)
    model = features_lib.rebuild_for_clip_size(params, model, num_frames,
                                               crop_size)
    module = export_lib.ConstCLExportModule(params, model, num_frames,
                                            crop_size)
    extractor = features_lib.FeatureExtractor(
        module.serve, num_frames, stride, crop_size, FLAGS.endpoint,
        FLAGS.num_clips)
    summary = features_lib.extract_features(
        videos, extractor, FLAGS.output_dir, FLAGS.format, FLAGS.endpoint,
        total=total)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  where = (summary['outputs'][0] if FLAGS.format == 'tfrecord'
           else FLAGS.output_dir)
  print(f'wrote {FLAGS.endpoint} features of {summary["written"]} of '
        f'{total} videos (shape {summary["shape"]} each) -> {where}; '
        f'skipped {summary["skipped"]}')
  for error in summary['errors'][:10]:
    print(f'  skipped: {error}')
  return 0 if summary['written'] else 1


if __name__ == '__main__':
  app.run(main)
