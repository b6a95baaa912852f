"""Speed benchmark: the ConST-CL train step and input pipeline vs baselines.

Everything is measured in ONE process on identical inputs, so that the ratios
(our step / bare R3D-50 step, our pipeline / video_ssl's pipeline) survive a
shared, loaded machine better than the absolute numbers do:

* model steps, timed round-robin (A, B, C, A, B, C, ...) so that a change of
  machine load hits every model alike:
  (a) ConST-CL: `configs/const_cl.py` experiment `const_cl_pretrain_kinetics400`
      with the sizes overridden, built by `tasks/pretrain.py`, its `train_step`
      in a `tf.function`;
  (b) CVRL: Model Garden `video_ssl` model + its `contrastive_loss`, on Model
      Garden's ResNet3D-50 with the released block specs;
  (c) the bare ResNet3D-50 (same specs) with a mean loss;
  all three with the same SGD-momentum optimizer, fp32, no XLA;
  (d) the fp32 matmul peak (2048^3): timed alone (median of several) and
      also inside the same round-robin, which gives `mfu_same_rounds`.
  Forward FLOPs come from TF's profiler on the forward concrete function
  (multiply-add = 2 FLOPs, as the matmul peak); MFU = 3 x forward FLOPs /
  step time / matmul peak (the backward pass is counted as 2x the forward).
* input pipelines on the same TFRecords of 256x340 JPEG frames: ours
  (`dataloaders/ssl_parser.py`) and `video_ssl`'s (its task's `build_inputs`,
  i.e. Model Garden's InputReader + video_ssl Parser/Decoder), plus the cost
  of decoding the sampled frames alone, as a ceiling.
* conv forms (`--sections=forms`, not run by default): our step with the
  conv forms of `modeling/layers/blocks_3d.py` against the same model built
  with TensorFlow's Conv3D in place of one form (`MatmulGradConv3D`) and of
  every form, timed round-robin: what the forms gain in the whole step.
* tracker (`--sections=tracker`, not run by default): the toy OTB
  evaluation's tracking loop, one SiamFC tracker reused for every sequence
  (what `tasks/tracking.track_dataset` does) against a new tracker per
  sequence (what it did before, which retraced the tracker's tf.functions
  for every sequence), alternating rounds on the same random-init model and
  toy sequences; the boxes of the two must be equal.
* scaling of our step with batch and frames, and memory: CPU allocator stats
  are not available in TF (`get_memory_info('CPU:0')` raises), so memory is
  the process resident set size (psutil) sampled every 10 ms during the timed
  steps: peak, and its increase over the RSS before the model was built.
"""
import contextlib
import dataclasses
import gc
import json
import os
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.projects.video_ssl.configs import video_ssl as video_ssl_cfg
from official.projects.video_ssl.losses import losses as video_ssl_losses
from official.projects.video_ssl.modeling import video_ssl_model
from official.projects.video_ssl.tasks import pretrain as video_ssl_pretrain
from official.vision.configs import backbones_3d
from official.vision.configs import common
from official.vision.modeling.backbones import factory as backbone_factory

from configs import backbones as backbones_cfg
from configs import const_cl as const_cl_cfg
from dataloaders import ssl_parser
from dataloaders import tracking_readers
from dataloaders import video_records
from modeling.backbones import resnet_3d_y
from modeling.layers import blocks_3d
from tasks import pretrain  # pylint: disable=unused-import
from tasks import tracking
from tasks import tracking_inference

try:
  import psutil  # pylint: disable=g-import-not-at-top
except ImportError:  # pragma: no cover
  psutil = None

# Released R3D-50 block specs (SPEC s.1) in Model Garden's ResNet3D form.
R3D50_BLOCK_SPECS = (
    backbones_3d.ResNet3DBlock(temporal_strides=1,
                               temporal_kernel_sizes=(1, 1, 1),
                               use_self_gating=False),
    backbones_3d.ResNet3DBlock(temporal_strides=1,
                               temporal_kernel_sizes=(1, 1, 1, 1),
                               use_self_gating=False),
    backbones_3d.ResNet3DBlock(temporal_strides=1,
                               temporal_kernel_sizes=(3,) * 6,
                               use_self_gating=False),
    backbones_3d.ResNet3DBlock(temporal_strides=1,
                               temporal_kernel_sizes=(3, 3, 3),
                               use_self_gating=False),
)


@dataclasses.dataclass
class BenchmarkSettings:
  """What to measure; `full_settings()` / `quick_settings()` give presets."""
  quick: bool = False
  batch_size: int = 4  # videos; each gives 2 views (clips)
  num_frames: int = 8
  image_size: int = 112
  warmup_steps: int = 2
  timed_steps: int = 5
  matmul_size: int = 2048
  matmul_repeats: int = 7
  # Scaling of our step: (batch, frames) pairs at `image_size`.
  scaling: Tuple[Tuple[int, int], ...] = ((2, 8), (4, 8), (8, 8), (4, 16))
  # Input pipelines.
  pipeline_videos: int = 16
  pipeline_source_frames: int = 64
  pipeline_source_size: Tuple[int, int] = (256, 340)
  pipeline_frames: int = 16
  pipeline_stride: int = 2
  pipeline_crop: int = 224
  pipeline_batch: int = 8
  pipeline_warmup_batches: int = 2
  pipeline_timed_batches: int = 6
  pipeline_rounds: int = 2
  tracker_sequences: int = 8
  tracker_rounds: int = 2


def full_settings() -> BenchmarkSettings:
  return BenchmarkSettings()


def quick_settings() -> BenchmarkSettings:
  """The ~2-minute version: tiny backbone, small inputs, few steps."""
  return BenchmarkSettings(
      quick=True, batch_size=2, num_frames=4, image_size=32, warmup_steps=1,
      timed_steps=2, matmul_size=512, matmul_repeats=3,
      scaling=((2, 4), (2, 8)),
      pipeline_videos=4, pipeline_source_frames=16,
      pipeline_source_size=(64, 85), pipeline_frames=4, pipeline_crop=32,
      pipeline_batch=2, pipeline_warmup_batches=1, pipeline_timed_batches=2,
      pipeline_rounds=1, tracker_sequences=2, tracker_rounds=1)


# ----------------------------------------------------------------- measuring


def matmul_peak(n: int = 2048, repeats: int = 7) -> Dict[str, float]:
  """fp32 [n, n] x [n, n] matmul throughput: median of `repeats` runs."""
  a = tf.random.stateless_normal([n, n], seed=[1, 2])
  b = tf.random.stateless_normal([n, n], seed=[3, 4])
  mm = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
  mm(a, b).numpy()  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    mm(a, b).numpy()
    times.append(time.perf_counter() - t0)
  median = float(np.median(times))
  return {'size': n, 'median_seconds': median,
          'gflops': 2.0 * n**3 / median / 1e9,
          'best_gflops': 2.0 * n**3 / min(times) / 1e9}


def profile_flops(fn: Callable[..., Any], *args) -> int:
  """FLOPs of one call of `fn(*args)`, from TF's profiler on its graph.

  Args:
    fn: a Python callable of tensors (traced here with `tf.function`).
    *args: example tensors (their full static shapes are used).

  Returns:
    Total float operations (multiply-add counted as 2).
  """
  specs = tf.nest.map_structure(
      lambda x: tf.TensorSpec(x.shape, x.dtype), args)
  concrete = tf.function(fn).get_concrete_function(*specs)
  opts = (tf.compat.v1.profiler.ProfileOptionBuilder(
      tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
          .with_empty_output().build())
  info = tf.compat.v1.profiler.profile(
      graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(), cmd='op',
      options=opts)
  return int(info.total_float_ops)


class RssSampler:
  """Peak resident set size of this process while the context is open."""

  def __init__(self, interval: float = 0.01):
    self._interval = interval
    self._stop = threading.Event()
    self.peak = 0

  @staticmethod
  def current() -> int:
    if psutil is not None:
      return int(psutil.Process().memory_info().rss)
    with open('/proc/self/statm') as f:  # pragma: no cover
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self.current())
      time.sleep(self._interval)

  def __enter__(self):
    self.peak = self.current()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self.current())


@dataclasses.dataclass
class StepBench:
  """One model's compiled train step on fixed inputs."""
  name: str
  step: Callable[[], Any]
  forward: Callable[..., Any]
  forward_args: Tuple[Any, ...]
  num_clips: int
  num_parameters: int
  rss_before_build: int
  times: List[float] = dataclasses.field(default_factory=list)
  peak_rss: int = 0


def _images(batch: int, frames: int, size: int) -> tf.Tensor:
  """2B clips (view a first) of smooth random frames in [0, 1]."""
  x = tf.random.stateless_uniform([2 * batch, frames, size // 8 or 1,
                                   size // 8 or 1, 3], seed=[7, 8])
  x = tf.reshape(x, [-1, size // 8 or 1, size // 8 or 1, 3])
  x = tf.image.resize(x, [size, size])
  return tf.reshape(x, [2 * batch, frames, size, size, 3])


def const_cl_inputs(batch: int, frames: int, size: int, num_boxes: int
                    ) -> Dict[str, tf.Tensor]:
  """Model inputs of `tasks/pretrain.py` (views stacked, view a first)."""
  n = 2 * batch
  u = tf.random.stateless_uniform([n, frames, num_boxes, 2], seed=[5, 6])
  size_hw = 0.1 + 0.4 * tf.random.stateless_uniform(
      [n, frames, num_boxes, 2], seed=[6, 7])
  y0x0 = u * (1.0 - size_hw)
  return {
      'image': _images(batch, frames, size),
      'boxes': tf.concat([y0x0, y0x0 + size_hw], axis=-1),
      'box_mask': tf.ones([n, frames, num_boxes]),
      'frame_index': tf.tile(tf.range(frames)[None], [n, 1]),
  }


def _optimizer():
  return tf_keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9)


def _num_params(model: tf_keras.Model) -> int:
  return int(sum(np.prod(v.shape) for v in model.variables))


def const_cl_config(batch: int, frames: int, size: int, quick: bool):
  """`const_cl_pretrain_kinetics400` with the benchmark's sizes, fp32.

  The released context length is 5 feature frames; with fewer feature frames
  (8 input frames give 4) it is the largest odd length that fits, since the
  config refuses a context longer than the clip.
  """
  config = exp_factory.get_exp_config('const_cl_pretrain_kinetics400')
  if quick:
    const_cl_cfg.toy_task(config.task)
  config.runtime.mixed_precision_dtype = 'float32'
  data = config.task.train_data
  data.input_path = ''
  data.toy_world_split = ''
  data.global_batch_size = batch
  data.feature_shape = (frames, size, size, 3)
  stride = const_cl_cfg.backbone_frame_stride(config.task.model)
  feature_frames = frames // stride
  length = min(5, feature_frames if feature_frames % 2 else feature_frames - 1)
  config.task.model.local_head.context_length = max(1, length)
  config.task.validation_data.input_path = ''
  config.task.validation_data.toy_world_split = ''
  config.task.validation_data.feature_shape = data.feature_shape
  const_cl_cfg.validate_pretrain_task(config.task)
  return config


def build_const_cl(batch: int, frames: int, size: int, quick: bool
                   ) -> StepBench:
  """(a) our train step, from the registered experiment and its task."""
  rss = RssSampler.current()
  config = const_cl_config(batch, frames, size, quick)
  task = task_factory.get_task(config.task)
  model = task.build_model()
  optimizer = _optimizer()
  metrics = task.build_metrics(training=True)
  inputs = const_cl_inputs(batch, frames, size, config.task.train_data.num_boxes)
  step = tf.function(lambda: task.train_step(inputs, model, optimizer,
                                             metrics)[task.loss])
  forward = lambda x: task._forward(x, model, training=True)[0]  # pylint: disable=protected-access
  return StepBench('const_cl', step, forward, (inputs,), 2 * batch,
                   _num_params(model), rss)


def _baseline_backbone(frames: int, size: int, quick: bool) -> tf_keras.Model:
  """Model Garden ResNet3D-50 with the released block specs.

  Quick mode: Model Garden's ResNet3D only knows depths >= 50 at width 64,
  so the tiny stand-in is our `ResNet3DY` with one res5, which is layer for
  layer Model Garden's ResNet3D layout (see modeling/backbones/resnet_3d_y.py).
  """
  specs = tf_keras.layers.InputSpec(shape=[None, frames, size, size, 3])
  norm = common.NormActivation(use_sync_bn=False, norm_momentum=0.9,
                               norm_epsilon=1e-5)
  if quick:
    cfg = backbones_cfg.resnet_3d_y_tiny()
    return resnet_3d_y.ResNet3DY(
        block_repeats=cfg.block_repeats, base_filters=cfg.base_filters,
        temporal_kernel_sizes=backbones_cfg.stage_temporal_kernel_sizes(cfg),
        input_specs=specs, duplicate_res5=False, norm_momentum=0.9,
        norm_epsilon=1e-5)
  backbone_config = backbones_3d.Backbone3D(
      type='resnet_3d', resnet_3d=backbones_3d.ResNet3D(
          model_id=50, stem_type='v0', stem_conv_temporal_kernel_size=5,
          stem_conv_temporal_stride=2, stem_pool_temporal_stride=1,
          block_specs=R3D50_BLOCK_SPECS))
  return backbone_factory.build_backbone(
      input_specs=specs, backbone_config=backbone_config,
      norm_activation_config=norm)


def build_cvrl(batch: int, frames: int, size: int, quick: bool) -> StepBench:
  """(b) CVRL: video_ssl's model and contrastive loss on the same clips."""
  rss = RssSampler.current()
  backbone = _baseline_backbone(frames, size, quick)
  hidden = (256, 2, 64) if quick else (2048, 3, 128)
  model = video_ssl_model.VideoSSLModel(
      backbone=backbone, normalize_feature=False, hidden_dim=hidden[0],
      hidden_layer_num=hidden[1],
      hidden_norm_args=common.NormActivation(
          use_sync_bn=False, norm_momentum=0.997, norm_epsilon=1e-5),
      projection_dim=hidden[2],
      input_specs={'image': tf_keras.layers.InputSpec(
          shape=[None, frames, size, size, 3])})
  optimizer = _optimizer()
  images = _images(batch, frames, size)

  def forward(x):
    out = model(x, training=True)
    return video_ssl_losses.contrastive_loss(
        out, num_replicas=1, normalize_hidden=True, temperature=0.1,
        model=model, weight_decay=1e-6)['total_loss']

  def train_step():
    with tf.GradientTape() as tape:
      loss = forward(images)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return StepBench('cvrl_video_ssl', tf.function(train_step), forward,
                   (images,), 2 * batch, _num_params(model), rss)


def build_bare(batch: int, frames: int, size: int, quick: bool) -> StepBench:
  """(c) the bare ResNet3D-50 with a mean loss."""
  rss = RssSampler.current()
  backbone = _baseline_backbone(frames, size, quick)
  optimizer = _optimizer()
  images = _images(batch, frames, size)
  last = max(backbone.output_specs.keys())

  def forward(x):
    return tf.reduce_mean(backbone(x, training=True)[last])

  def train_step():
    with tf.GradientTape() as tape:
      loss = forward(images)
    grads = tape.gradient(loss, backbone.trainable_variables)
    optimizer.apply_gradients(zip(grads, backbone.trainable_variables))
    return loss

  return StepBench('bare_r3d50', tf.function(train_step), forward, (images,),
                   2 * batch, _num_params(backbone), rss)


def build_matmul(n: int) -> StepBench:
  """(d) the fp32 n^3 matmul as a 'step' for the round-robin timing."""
  a = tf.random.stateless_normal([n, n], seed=[1, 2])
  b = tf.random.stateless_normal([n, n], seed=[3, 4])
  step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  return StepBench('matmul', step, tf.matmul, (a, b), 0, 0,
                   RssSampler.current())


def time_round_robin(benches: Sequence[StepBench], warmup: int,
                     steps: int) -> None:
  """Warm-up every step, then time them in turns; fills `times`, `peak_rss`.

  Peak RSS of a model is sampled only while its own step runs.
  """
  for bench in benches:
    for _ in range(warmup):
      bench.step().numpy()
  for _ in range(steps):
    for bench in benches:
      with RssSampler() as sampler:
        t0 = time.perf_counter()
        value = bench.step().numpy()
        bench.times.append(time.perf_counter() - t0)
      bench.peak_rss = max(bench.peak_rss, sampler.peak)
      if not np.isfinite(value):
        raise FloatingPointError(f'benchmark {bench.name}: loss {value}')


def _summary(bench: StepBench, flops: int, peak_gflops: float
             ) -> Dict[str, Any]:
  median = float(np.median(bench.times))
  return {
      'median_step_seconds': median,
      'step_seconds': [float(t) for t in bench.times],
      'clips_per_second': bench.num_clips / median,
      'clips': bench.num_clips,
      'parameters': bench.num_parameters,
      'forward_gflops': flops / 1e9,
      'mfu': 3.0 * flops / median / (peak_gflops * 1e9),
      'peak_rss_mb': bench.peak_rss / 2**20,
      'rss_increase_per_clip_mb':
          (bench.peak_rss - bench.rss_before_build) / 2**20 / bench.num_clips,
  }


def _median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
  """Median over rounds of a[i] / b[i] (same-round pairs share the load)."""
  return float(np.median(np.asarray(a) / np.asarray(b)))


def benchmark_models(s: BenchmarkSettings, peak_gflops: float
                     ) -> Dict[str, Any]:
  """(a)-(c) timed round-robin on identical clips."""
  args = (s.batch_size, s.num_frames, s.image_size, s.quick)
  benches = [build_const_cl(*args), build_cvrl(*args), build_bare(*args)]
  matmul = build_matmul(s.matmul_size)
  # The matmul runs in the same rounds: on a shared machine the peak it
  # measures is then taken under the same load as the steps.
  time_round_robin(benches + [matmul], s.warmup_steps, s.timed_steps)
  matmul_seconds = float(np.median(matmul.times))
  same_round_peak = 2.0 * s.matmul_size**3 / matmul_seconds / 1e9
  out = {'matmul_same_rounds': {
      'size': s.matmul_size, 'median_seconds': matmul_seconds,
      'gflops': same_round_peak}}
  for bench in benches:
    flops = profile_flops(bench.forward, *bench.forward_args)
    out[bench.name] = _summary(bench, flops, peak_gflops)
    # MFU against the peak measured in the same rounds, step by step.
    out[bench.name]['mfu_same_rounds'] = float(np.median(
        3.0 * flops / np.asarray(bench.times) /
        (2.0 * s.matmul_size**3 / np.asarray(matmul.times))))
  ours, cvrl, bare = benches
  out['step_ratio_vs_bare'] = _median_ratio(ours.times, bare.times)
  out['step_ratio_cvrl_vs_bare'] = _median_ratio(cvrl.times, bare.times)
  out['step_ratio_vs_cvrl'] = _median_ratio(ours.times, cvrl.times)
  out['flops_ratio_vs_bare'] = (out['const_cl']['forward_gflops'] /
                                out['bare_r3d50']['forward_gflops'])
  return out


# `benchmark_forms` variants: name -> the forms replaced by TF's Conv3D.
FORM_VARIANTS = (
    ('all_forms', ()),
    ('without_matmul_grad', (blocks_3d.MatmulGradConv3D,)),
    ('plain_conv3d', blocks_3d.CONV3D_FORMS),
)


def benchmark_forms(s: BenchmarkSettings) -> Dict[str, Any]:
  """Our step with every conv form vs with some or all as TF's Conv3D.

  The same model (a) is built once per `FORM_VARIANTS` entry (the forms
  are chosen when layers are built, `blocks_3d.plain_conv3d_for`) and the
  steps are timed round-robin on the same clips. `step_ratio_vs_all_forms`
  of a variant is the median over rounds of its step time / the all-forms
  step time (> 1: the replaced forms made the step faster).
  """
  args = (s.batch_size, s.num_frames, s.image_size, s.quick)
  benches = []
  for name, replaced in FORM_VARIANTS:
    gc.collect()
    with blocks_3d.plain_conv3d_for(*replaced):
      bench = build_const_cl(*args)
    bench.name = name
    benches.append(bench)
  time_round_robin(benches, s.warmup_steps, s.timed_steps)
  out = {}
  for bench in benches:
    out[bench.name] = {
        'median_step_seconds': float(np.median(bench.times)),
        'step_seconds': list(bench.times),
        'step_ratio_vs_all_forms': _median_ratio(bench.times,
                                                 benches[0].times),
    }
  return out


def track_all(model, sequences, tracker_kwargs: Dict[str, Any],
              shared: bool) -> Dict[str, np.ndarray]:
  """Boxes of every sequence: `tracking.track_sequences` (`shared`), or the
  baseline with a new tracker per sequence."""
  if shared:
    pairs = tracking.track_sequences(model, sequences, tracker_kwargs)
  else:
    pairs = ((q, tracking_inference.track_sequence(
        q, tracker=tracking.make_tracker(model, **tracker_kwargs)))
             for q in sequences)
  return {sequence.name: boxes for sequence, boxes in pairs}


def benchmark_tracker(s: BenchmarkSettings) -> Dict[str, Any]:
  """Toy OTB tracking: one tracker for all sequences vs a new one each.

  `const_cl_tracking_toy`'s model at a seeded random initialization tracks
  the first `s.tracker_sequences` of its toy OTB sequences (the toy cache,
  created on first use), in `s.tracker_rounds` rounds of (new tracker per
  sequence, shared tracker). `speedup_shared_vs_per_sequence` is the median
  over rounds of the per-sequence time / the shared time; `boxes_equal` says
  whether both ways gave exactly the same boxes in every round.
  """
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  tf_keras.utils.set_random_seed(0)
  model = tracking.build_model_from_config(params.task, checkpoint=None)
  kwargs = tracking.tracker_kwargs_from_config(params.task)
  sequences = tracking_readers.list_sequences(
      tracking.resolve_dirs(params.task)['eval'])[:s.tracker_sequences]
  times = {'per_sequence': [], 'shared': []}
  equal = True
  for _ in range(s.tracker_rounds):
    boxes = {}
    for way in times:
      t0 = time.perf_counter()
      boxes[way] = track_all(model, sequences, kwargs, way == 'shared')
      times[way].append(time.perf_counter() - t0)
    equal = equal and all(np.array_equal(boxes['shared'][k], v)
                          for k, v in boxes['per_sequence'].items())
  return {
      'sequences': len(sequences),
      'frames': int(sum(len(q.frame_paths) for q in sequences)),
      'seconds': times,
      'speedup_shared_vs_per_sequence': _median_ratio(
          times['per_sequence'], times['shared']),
      'boxes_equal': bool(equal),
  }


def benchmark_scaling(s: BenchmarkSettings, peak_gflops: float,
                      main: Optional[Dict[str, Any]] = None
                      ) -> List[Dict[str, Any]]:
  """Our step at several (batch, frames); one model at a time.

  Args:
    s: settings (`scaling` lists the (batch, frames) pairs).
    peak_gflops: the matmul peak, for the MFU.
    main: `benchmark_models()['const_cl']`, reused for the (batch, frames)
      of the main comparison instead of building that model again.

  Returns:
    One dict per pair (batch, frames, size and the step summary).
  """
  rows = []
  for batch, frames in s.scaling:
    if main is not None and (batch, frames) == (s.batch_size, s.num_frames):
      row = {'batch': batch, 'frames': frames, 'size': s.image_size}
      row.update(main)
      rows.append(row)
      continue
    gc.collect()
    bench = build_const_cl(batch, frames, s.image_size, s.quick)
    time_round_robin([bench], s.warmup_steps, s.timed_steps)
    flops = profile_flops(bench.forward, *bench.forward_args)
    row = {'batch': batch, 'frames': frames, 'size': s.image_size}
    row.update(_summary(bench, flops, peak_gflops))
    rows.append(row)
    del bench
  return rows


# ------------------------------------------------------------ input pipeline


def write_benchmark_records(directory: str, num_videos: int,
                            num_frames: int, height: int, width: int,
                            num_files: int = 2, seed: int = 0) -> str:
  """Writes videos of moving random textures as JPEG TFRecords.

  Returns:
    The file pattern.
  """
  rng = np.random.default_rng(seed)
  per_file = [[] for _ in range(num_files)]
  for v in range(num_videos):
    # A texture twice the frame size, panned over time: frames differ, and
    # the JPEG sizes are those of textured natural-ish content.
    coarse = rng.uniform(0, 255, (1, height // 8, width // 4, 3))
    big = tf.image.resize(coarse.astype(np.float32), [2 * height, 2 * width],
                          'bicubic')[0].numpy()
    big += rng.normal(0, 12, big.shape)
    big = np.clip(big, 0, 255).astype(np.uint8)
    frames = []
    for t in range(num_frames):
      dy = (t * 3) % height
      dx = (t * 5) % width
      frames.append(big[dy:dy + height, dx:dx + width])
    per_file[v % num_files].append(video_records.make_sequence_example(
        np.stack(frames), label=[v % 10], video_id=f'bench_{v}',
        jpeg_quality=90))
  for i, examples in enumerate(per_file):
    video_records.write_records(
        os.path.join(directory, f'bench-{i:03d}.tfrecord'), examples)
  return os.path.join(directory, 'bench-*.tfrecord')


def our_dataset(pattern: str, s: BenchmarkSettings) -> tf.data.Dataset:
  parser = ssl_parser.Parser(num_frames=s.pipeline_frames,
                             stride=s.pipeline_stride,
                             crop_size=s.pipeline_crop, num_boxes=8)
  return ssl_parser.build_ssl_dataset(
      pattern, parser, global_batch_size=s.pipeline_batch, is_training=True,
      shuffle_buffer_size=s.pipeline_videos, cycle_length=2, seed=0)


def video_ssl_dataset(pattern: str, s: BenchmarkSettings) -> tf.data.Dataset:
  """video_ssl's training input, built by its own task's `build_inputs`."""
  data = video_ssl_cfg.DataConfig(
      input_path=pattern, is_training=True, is_ssl=True,
      feature_shape=(s.pipeline_frames, s.pipeline_crop, s.pipeline_crop, 3),
      temporal_stride=s.pipeline_stride, global_batch_size=s.pipeline_batch,
      num_classes=10, shuffle_buffer_size=s.pipeline_videos, cycle_length=2,
      drop_remainder=True)
  task_config = video_ssl_cfg.VideoSSLPretrainTask(train_data=data)
  task = video_ssl_pretrain.VideoSSLPretrainTask(task_config)
  return task.build_inputs(data)


def decode_only_dataset(pattern: str, s: BenchmarkSettings) -> tf.data.Dataset:
  """Parse + full decode of the 2 x T sampled frames, nothing else."""
  decoder = ssl_parser.Decoder(read_boxes=False)
  count = 2 * s.pipeline_frames

  def decode(serialized):
    encoded = decoder.decode(serialized)[video_records.IMAGE_KEY]
    idx = tf.math.floormod(s.pipeline_stride * tf.range(count),
                           tf.size(encoded))
    frames = tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3),
                       tf.gather(encoded, idx),
                       fn_output_signature=tf.uint8)
    return tf.reduce_mean(tf.cast(frames[:, ::8, ::8], tf.float32))

  files = tf.io.gfile.glob(pattern)
  ds = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=2,
      num_parallel_calls=tf.data.AUTOTUNE).repeat()
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(s.pipeline_batch).prefetch(tf.data.AUTOTUNE)


def videos_per_second(dataset: tf.data.Dataset, batch: int, warmup: int,
                      timed: int) -> float:
  """Videos/s over `timed` batches after `warmup` batches (fresh iterator)."""
  iterator = iter(dataset)
  for _ in range(warmup):
    tf.nest.map_structure(lambda x: x.numpy(), next(iterator))
  t0 = time.perf_counter()
  for _ in range(timed):
    tf.nest.map_structure(lambda x: x.numpy(), next(iterator))
  seconds = time.perf_counter() - t0
  del iterator
  return batch * timed / seconds


def benchmark_pipelines(s: BenchmarkSettings,
                        directory: Optional[str] = None) -> Dict[str, Any]:
  """Videos/s of ours, video_ssl's and decode-only, in alternating rounds."""
  with contextlib.ExitStack() as stack:
    if directory is None:
      directory = stack.enter_context(tempfile.TemporaryDirectory())
    pattern = write_benchmark_records(
        directory, s.pipeline_videos, s.pipeline_source_frames,
        *s.pipeline_source_size)
    builders = {'const_cl': our_dataset, 'video_ssl': video_ssl_dataset,
                'decode_only': decode_only_dataset}
    rates = {name: [] for name in builders}
    for _ in range(s.pipeline_rounds):
      for name, build in builders.items():
        rates[name].append(videos_per_second(
            build(pattern, s), s.pipeline_batch, s.pipeline_warmup_batches,
            s.pipeline_timed_batches))
        gc.collect()
  out = {f'{name}_videos_per_second': float(np.median(r))
         for name, r in rates.items()}
  out['rounds'] = {name: [float(x) for x in r] for name, r in rates.items()}
  out['speedup_vs_video_ssl'] = _median_ratio(rates['const_cl'],
                                              rates['video_ssl'])
  out['settings'] = {
      'source_frames': s.pipeline_source_frames,
      'source_size': list(s.pipeline_source_size),
      'frames': s.pipeline_frames, 'stride': s.pipeline_stride,
      'crop': s.pipeline_crop, 'views': 2, 'batch': s.pipeline_batch,
      'videos': s.pipeline_videos}
  return out


# ---------------------------------------------------------------------- all


def onednn_enabled() -> Optional[bool]:
  """Whether TensorFlow runs its oneDNN kernels in this process.

  Matters for reading the numbers: on this 2-core CPU TF leaves oneDNN off
  by default, and `TF_ENABLE_ONEDNN_OPTS=1` (set before TF is imported)
  raises the fp32 matmul from ~115 to ~145 GFLOP/s and changes which conv
  form is fastest (README, "oneDNN changes the peak"). None when this TF
  build cannot say.
  """
  try:
    # pylint: disable=g-import-not-at-top
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return None


def run_benchmark(settings: BenchmarkSettings,
                  sections: Sequence[str] = ('models', 'pipeline', 'scaling')
                  ) -> Dict[str, Any]:
  """Runs the benchmark; returns the JSON-ready result dict.

  Top-level fields: `step_ratio_vs_bare`, `mfu`, `pipeline_speedup_vs_video_ssl`
  (None for a skipped section), `matmul`, `models`, `pipeline`, `forms`,
  `scaling`,
  `loadavg_start`/`loadavg_end`, `onednn` (the kernel library: see
  `onednn_enabled`) and the settings.
  """
  result = {
      'settings': dataclasses.asdict(settings),
      'loadavg_start': list(os.getloadavg()),
      'cpu_count': os.cpu_count(),
      'tensorflow': tf.__version__,
      'onednn': onednn_enabled(),
      'memory_measure': 'process RSS (psutil), sampled every 10 ms during '
                        'the timed steps; CPU allocator stats are not '
                        'available in TF',
      'step_ratio_vs_bare': None, 'mfu': None,
      'pipeline_speedup_vs_video_ssl': None,
  }
  t0 = time.perf_counter()
  result['matmul'] = matmul_peak(settings.matmul_size,
                                 settings.matmul_repeats)
  peak = result['matmul']['gflops']
  logging.info('matmul peak %.1f GFLOP/s (oneDNN: %s)', peak,
               result['onednn'])
  if 'models' in sections:
    result['models'] = benchmark_models(settings, peak)
    result['step_ratio_vs_bare'] = result['models']['step_ratio_vs_bare']
    # The peak measured in the same rounds as the steps (same load).
    result['mfu'] = result['models']['const_cl']['mfu_same_rounds']
    result['mfu_vs_separate_peak'] = result['models']['const_cl']['mfu']
    logging.info('models: %s', result['models'])
  if 'pipeline' in sections:
    result['pipeline'] = benchmark_pipelines(settings)
    result['pipeline_speedup_vs_video_ssl'] = (
        result['pipeline']['speedup_vs_video_ssl'])
    logging.info('pipeline: %s', result['pipeline'])
  if 'forms' in sections:
    result['forms'] = benchmark_forms(settings)
    logging.info('forms: %s', result['forms'])
  if 'tracker' in sections:
    result['tracker'] = benchmark_tracker(settings)
    logging.info('tracker: %s', result['tracker'])
  if 'scaling' in sections:
    main = result['models']['const_cl'] if 'models' in result else None
    result['scaling'] = benchmark_scaling(settings, peak, main)
  result['matmul_end'] = matmul_peak(settings.matmul_size,
                                     settings.matmul_repeats)
  result['loadavg_end'] = list(os.getloadavg())
  result['wall_seconds'] = time.perf_counter() - t0
  return result


def write_result(result: Dict[str, Any], path: str) -> None:
  """Writes the result dict as indented JSON (creating the folder)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
