"""Parameters and forward FLOPs of a pretraining experiment (Tables 3 and 6).

Prints parameters (total, backbone, global head, local head) and forward
FLOPs per clip (backbone alone and backbone + heads) at the experiment's
input size (`task.train_data.feature_shape`). A multiply-add counts as 2
FLOPs; see `modeling/model_stats.py`.

Usage:
  python tools/model_stats.py --experiment=const_cl_pretrain_kinetics400
  python tools/model_stats.py --experiment=const_cl_ablation_baseline_cvrl \
      --output_json=/tmp/cvrl_stats.json
  python tools/model_stats.py --experiment=const_cl_ablation_context_length_3 \
      --params_override='task.train_data.feature_shape=[16,224,224,3]' \
      --noflops
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tf_keras

from official.common import flags as tfm_flags
from official.core import train_utils
from official.vision.modeling import factory_3d

from configs import const_cl as exp_cfg
from modeling import model_stats
from tasks import registry_imports  # pylint: disable=unused-import

flags.DEFINE_string('output_json', None,
                    'Also write the numbers to this JSON file.')
flags.DEFINE_boolean('flops', True,
                     'Profile the FLOPs (builds two graphs of the model).')
FLAGS = flags.FLAGS


def main(_):
  params = train_utils.parse_configuration(FLAGS)
  task = params.task
  if not isinstance(task, exp_cfg.ConstCLPretrainTask):
    print(f'error: --experiment={FLAGS.experiment} is not a pretraining '
          f'experiment (task config {type(task).__name__}); this tool '
          'measures the ConST-CL and CVRL pretraining models',
          file=sys.stderr)
    return 2
  data = task.train_data
  model = factory_3d.build_model(
      task.model.model_type,
      input_specs=tf_keras.layers.InputSpec(
          shape=[None] + list(data.feature_shape)),
      model_config=task.model, num_classes=0)
  model_stats.build_variables(model, data.feature_shape, data.num_boxes)
  stats = model_stats.model_stats(model, data.feature_shape, data.num_boxes,
                                  with_flops=FLAGS.flops)
  shape = 'x'.join(str(x) for x in data.feature_shape[:3])
  print(model_stats.format_table(
      stats, title=f'{FLAGS.experiment} (clip {shape}, '
      f'{data.num_boxes} boxes/frame)'))
  if FLAGS.output_json:
    with open(FLAGS.output_json, 'w') as f:
      json.dump({'experiment': FLAGS.experiment,
                 'feature_shape': list(data.feature_shape),
                 'num_boxes': data.num_boxes, **stats}, f, indent=2)


if __name__ == '__main__':
  tfm_flags.define_flags()
  app.run(main)
