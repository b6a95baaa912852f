"""`dataloaders.cache.build_once`: once, atomic, safe when racing."""
import os

import pytest

from dataloaders import cache


def _writer(calls, text='data'):
  def build(tmp):
    calls.append(tmp)
    with open(os.path.join(tmp, 'file.txt'), 'w') as f:
      f.write(text)
  return build


def test_builds_once_then_reuses(tmp_path):
  folder = str(tmp_path / 'a' / 'thing')
  calls = []
  assert cache.build_once(folder, _writer(calls)) is True
  assert cache.build_once(folder, _writer(calls)) is False
  assert len(calls) == 1
  assert sorted(os.listdir(folder)) == ['_COMPLETE', 'file.txt']
  # Built in a hidden sibling, which is gone.
  assert os.path.dirname(calls[0]) == str(tmp_path / 'a')
  assert os.listdir(tmp_path / 'a') == ['thing']


def test_failed_build_leaves_nothing(tmp_path):
  folder = str(tmp_path / 'thing')

  def broken(tmp):
    open(os.path.join(tmp, 'half.txt'), 'w').close()
    raise RuntimeError('disk full')

  with pytest.raises(RuntimeError, match='disk full'):
    cache.build_once(folder, broken)
  assert os.listdir(tmp_path) == []
  assert not cache.is_complete(folder)


def test_losing_a_race_uses_the_winner(tmp_path):
  folder = str(tmp_path / 'thing')

  def racing(tmp):
    # Another process renames its complete copy into place meanwhile.
    os.makedirs(folder)
    with open(os.path.join(folder, 'file.txt'), 'w') as f:
      f.write('theirs')
    open(os.path.join(folder, '_COMPLETE'), 'w').close()
    _writer([], 'ours')(tmp)

  assert cache.build_once(folder, racing) is False
  with open(os.path.join(folder, 'file.txt')) as f:
    assert f.read() == 'theirs'
  assert os.listdir(tmp_path) == ['thing']


def test_incomplete_folder_is_set_aside(tmp_path):
  folder = tmp_path / 'thing'
  folder.mkdir()
  (folder / 'file.txt').write_text('half')
  assert cache.build_once(str(folder), _writer([], 'new')) is True
  assert (folder / 'file.txt').read_text() == 'new'
  stale = [p for p in os.listdir(tmp_path) if p.startswith('thing.stale-')]
  assert len(stale) == 1
  assert (tmp_path / stale[0] / 'file.txt').read_text() == 'half'
