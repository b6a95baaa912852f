"""Writes toy-world data in the real formats (see dataloaders/toy_world.py).

Usage examples (from the repo root):

  # Model Garden video TFRecords (+ label_map.txt): pretraining, classification
  python tools/make_toy_world.py --output_dir /tmp/toy/videos --kind videos \
      --num 100 --seed 0 --split train
  # ... of the transfer world (flat background, white objects, 5 shape classes)
  python tools/make_toy_world.py --output_dir /tmp/toy/shapes --kind videos \
      --world shapes --num 100 --split validation

  # GOT-10k / OTB tracking folders
  python tools/make_toy_world.py --output_dir /tmp/toy/got10k \
      --kind tracking_got10k --num 20
  python tools/make_toy_world.py --output_dir /tmp/toy/otb --kind tracking_otb \
      --num 10

  # AVA v2.2 files: videos/*.mp4, CSVs and the action label map (10 s videos)
  python tools/make_toy_world.py --output_dir /tmp/toy/ava --kind ava --num 20 \
      --split train
"""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from dataloaders import toy_world

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Folder to write into.')
_KIND = flags.DEFINE_enum(
    'kind', 'videos', ['videos', 'tracking_got10k', 'tracking_otb', 'ava'],
    'What to write.')
_WORLD = flags.DEFINE_enum(
    'world', 'pairs', list(toy_world.WORLD_NAMES),
    'Labelled world of the videos kind: pairs (the pretraining world), '
    'shapes (the transfer world) or plain (pairs without colour); the other '
    'kinds ignore it.')
_NUM = flags.DEFINE_integer('num', 100, 'Number of videos / sequences.')
_SEED = flags.DEFINE_integer('seed', 0, 'Dataset seed.')
_SPLIT = flags.DEFINE_string('split', 'train',
                             'Split name (videos and ava kinds).')
_NUM_FRAMES = flags.DEFINE_integer(
    'num_frames', None, 'Frames per video, >= 2; when not given, 32, or 80 '
    '(10 s) for ava.')
_SIZE = flags.DEFINE_integer('size', 64, 'Frame height and width in pixels.')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 2,
                                   'TFRecord shards (videos kind).')

flags.mark_flag_as_required('output_dir')


def main(argv):
  del argv
  num_frames = _NUM_FRAMES.value
  if num_frames is None:  # Not `or`: 0 is an error (ToyWorldSpec), not 32.
    num_frames = 80 if _KIND.value == 'ava' else 32
  base = (toy_world.named_world(_WORLD.value).spec
          if _KIND.value == 'videos' else toy_world.ToyWorldSpec())
  spec = dataclasses.replace(base, height=_SIZE.value, width=_SIZE.value,
                             num_frames=num_frames)
  spec.validate()  # Before any folder is made.
  out = _OUTPUT_DIR.value
  if _KIND.value == 'videos':
    pattern = toy_world.write_video_split(out, _SPLIT.value, _NUM.value,
                                          _SEED.value, spec, _NUM_SHARDS.value)
    label_map = toy_world.write_label_map(os.path.join(out, 'label_map.txt'),
                                          spec)
    logging.info('wrote %s and %s', pattern, label_map)
  elif _KIND.value in ('tracking_got10k', 'tracking_otb'):
    layout = _KIND.value.split('_')[1]
    names = toy_world.write_tracking_sequences(out, _NUM.value, _SEED.value,
                                               spec, layout)
    logging.info('wrote %d %s sequences to %s', len(names), layout, out)
  else:
    paths = toy_world.write_ava_dataset(out, _NUM.value, _SEED.value, spec,
                                        _SPLIT.value)
    logging.info('wrote %s', paths)


if __name__ == '__main__':
  app.run(main)
