r"""Draws ConST-CL attention maps (paper Appendix D, Figure 4) as a PNG.

Example:

  python tools/visualize_attention.py --experiment=const_cl_pretrain_toy \
      --checkpoint=/tmp/const_cl_toy \
      --input_pattern='/root/.cache/const_cl/toy_world/*/validation-*' \
      --video_index=3 --output=attention.png

A region of view a (given with --box ymin,xmin,ymax,xmax in normalized view-a
coordinates; else the record's `region/bbox/*` box number --box_index at the
region frame; else a centred box) queries view b's L context frames through
the decoder. The chosen layer's attention (--layer, -1 = last), averaged over
heads, is a distribution over all L*H'*W' context tokens; it is upsampled and
drawn over the context frames next to the source frame and its box. Views are
centre crops with view b --view_offset frames after view a (--views=center,
default) or come from the pretraining parser with --seed (--views=parser).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from tasks import attention_viz
from tasks import features as features_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', None, 'Registered pretraining experiment.',
                    required=True)
flags.DEFINE_multi_string('config_file', None, 'YAML overrides (strict).')
flags.DEFINE_string('params_override', '', 'a.b=1,c=2 overrides (strict).')
flags.DEFINE_string('checkpoint', None,
                    'Checkpoint prefix or model_dir (-> latest).',
                    required=True)
flags.DEFINE_string('input_pattern', None, 'Glob of video TFRecords.',
                    required=True)
flags.DEFINE_integer('video_index', 0, 'Which record of the pattern.')
flags.DEFINE_string('box', None, 'Query box ymin,xmin,ymax,xmax (view a, '
                    'normalized).')
flags.DEFINE_integer('box_index', 0, 'Which record box when --box is unset.')
flags.DEFINE_integer('layer', -1, 'Decoder layer (-1 = last).')
flags.DEFINE_enum('views', 'center', list(attention_viz.VIEW_MODES),
                  'How the two views are made.')
flags.DEFINE_integer('seed', 0, 'Parser seed (--views=parser).')
flags.DEFINE_integer('view_offset', None, 'Source frames from view a to view '
                     'b (--views=center; default half a clip).')
flags.DEFINE_integer('dpi', attention_viz.DEFAULT_DPI, 'PNG resolution.')
flags.DEFINE_string('output', 'attention.png', 'Output PNG.')


def main(argv):
  del argv
  try:
    box = attention_viz.parse_box(FLAGS.box) if FLAGS.box else None
    params = features_lib.load_experiment_config(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    model = features_lib.load_pretrained_model(params, FLAGS.checkpoint,
                                               FLAGS.experiment)
    result = attention_viz.visualize(
        params, model, FLAGS.input_pattern, FLAGS.output,
        video_index=FLAGS.video_index, box=box, box_index=FLAGS.box_index,
        layer=FLAGS.layer, views=FLAGS.views, seed=FLAGS.seed,
        view_offset=FLAGS.view_offset, dpi=FLAGS.dpi)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  shares = ', '.join(f'{s:.2f}' for s in result.heat.sum(axis=(1, 2)))
  print(f'attention of layer {result.layer} over {len(shares.split(","))} '
        f'context frames (shares {shares}) -> {FLAGS.output}')
  return 0


if __name__ == '__main__':
  app.run(main)
