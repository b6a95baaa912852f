"""Runs a trained SiamFC tracker on one sequence or a whole dataset.

Usage:
  # One sequence folder (GOT-10k or OTB layout) -> one results file:
  python tools/track.py --experiment=const_cl_tracking_toy \
      --checkpoint=/tmp/track_toy --sequence_dir=/data/OTB100/Basketball \
      --output=/tmp/results/Basketball.txt

  # Every sequence of a dataset -> OTB-layout results (<Seq>.txt), then
  # evaluate them (or pass --evaluate here):
  python tools/track.py --experiment=const_cl_tracking_got10k \
      --config_file=configs/yaml/const_cl_tracking_got10k.yaml \
      --checkpoint=/runs/track_got10k --dataset_dir=/data/OTB100 \
      --results_dir=/tmp/otb_results
  python tools/otb_eval.py --dataset_dir=/data/OTB100 \
      --results_dir=/tmp/otb_results

`--checkpoint` is a checkpoint file prefix or a model_dir (its latest
checkpoint): a fine-tuned tracking checkpoint, or a pretraining one
(tracking with the frozen pretrained features; the SiamFC head keeps its
constant initial values); empty tracks with a random initialization,
reproducible with `--seed`.
`--dataset_dir` defaults to the experiment's `task.eval_dir` (for the toy
experiment: the toy OTB folder, created on first use). Each results file has
one `x,y,w,h` line per frame.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import tf_keras

from tasks import features as features_lib
from tasks import registry_imports  # pylint: disable=unused-import
from tasks import tracking
from tasks import tracking_inference
from tasks.evaluation import otb

_EXPERIMENT = flags.DEFINE_string('experiment', None,
                                  'Registered tracking experiment.',
                                  required=True)
_CONFIG_FILE = flags.DEFINE_multi_string(
    'config_file', None, 'YAML override(s), strict, applied in order.')
_PARAMS_OVERRIDE = flags.DEFINE_string('params_override', None,
                                       'Comma-separated key=value overrides.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Checkpoint prefix or folder; empty tracks with a '
    'randomly initialized model (a baseline).')
_SEQUENCE_DIR = flags.DEFINE_string('sequence_dir', None,
                                    'One sequence folder to track.')
_OUTPUT = flags.DEFINE_string('output', None,
                              'Results file for --sequence_dir.')
_DATASET_DIR = flags.DEFINE_string(
    'dataset_dir', None, 'Folder of sequences; default task.eval_dir.')
_RESULTS_DIR = flags.DEFINE_string('results_dir', None,
                                   'Where <Seq>.txt results are written.')
_SEED = flags.DEFINE_integer(
    'seed', None, 'Seeds Python, NumPy and TensorFlow before the model is '
    'built (as train.py --seed), so that a random-init tracker (empty '
    '--checkpoint) is reproducible.')
_EVALUATE = flags.DEFINE_bool(
    'evaluate', False, 'After --dataset_dir tracking, print the OTB metrics '
    '(and write them to <results_dir>/otb_metrics.json).')


def main(argv):
  del argv
  params = features_lib.assemble_experiment_config(
      _EXPERIMENT.value, _CONFIG_FILE.value, _PARAMS_OVERRIDE.value)
  if not isinstance(params.task, tracking.exp_cfg.SiamFCTrackingTask):
    raise app.UsageError(f'--experiment={_EXPERIMENT.value} is not a '
                         'tracking experiment')
  if _SEQUENCE_DIR.value and _DATASET_DIR.value:
    raise app.UsageError('give --sequence_dir or --dataset_dir, not both')
  if _SEQUENCE_DIR.value and not _OUTPUT.value:
    raise app.UsageError('--sequence_dir needs --output')
  if not _SEQUENCE_DIR.value and not _RESULTS_DIR.value:
    raise app.UsageError('give --sequence_dir/--output or --results_dir '
                         '(with --dataset_dir or the experiment eval_dir)')
  if _SEED.value is not None:
    tf_keras.utils.set_random_seed(_SEED.value)
  model = tracking.build_model_from_config(params.task, _CHECKPOINT.value,
                                           '--checkpoint')
  tracker_kwargs = tracking.tracker_kwargs_from_config(params.task)

  if _SEQUENCE_DIR.value:
    results = tracking.track_sequence_dir(model, _SEQUENCE_DIR.value,
                                          tracker_kwargs)
    if len(results) == 1:
      sequence, boxes = next(iter(results.values()))
      tracking_inference.write_results(_OUTPUT.value, boxes,
                                       sequence.pixel_origin)
      print(f'wrote {len(boxes)} boxes to {_OUTPUT.value}')
    else:
      # An OTB two-target folder: one file per target beside --output.
      root, ext = os.path.splitext(_OUTPUT.value)
      for name, (sequence, boxes) in sorted(results.items()):
        path = f'{root}{name[name.rfind("."):]}{ext or ".txt"}'
        tracking_inference.write_results(path, boxes, sequence.pixel_origin)
        print(f'wrote {len(boxes)} boxes to {path}')
    return

  dataset_dir = _DATASET_DIR.value or tracking.resolve_dirs(
      params.task)['eval']
  if not dataset_dir:
    raise app.UsageError('no --dataset_dir and the experiment has no '
                         'task.eval_dir')
  names = tracking.track_dataset(model, dataset_dir, _RESULTS_DIR.value,
                                 tracker_kwargs)
  print(f'tracked {len(names)} sequences of {dataset_dir} into '
        f'{_RESULTS_DIR.value}')
  if _EVALUATE.value:
    result = otb.evaluate_otb(dataset_dir, _RESULTS_DIR.value)
    path = os.path.join(_RESULTS_DIR.value, 'otb_metrics.json')
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)
    logging.info('metrics written to %s', path)
    print(f'sequences: {len(result["per_sequence"])}  '
          f'precision@20px: {result["precision"]:.4f}  '
          f'success AUC: {result["success"]:.4f}')


if __name__ == '__main__':
  app.run(main)
