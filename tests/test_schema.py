import json
import subprocess
import sys

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf

from pipeline import colour, letterbox, schema


def _record(key='k/1.jpg', size=64):
  rgb = skimage.data.astronaut()[::4, ::3]
  canvas, box = letterbox.letterbox(rgb, size)
  lab = colour.rgb_to_lab(canvas / 255.0)
  stored = schema.encode_lab(schema.quantize_lab(lab).numpy())
  emb = np.linspace(0, 1, 10, dtype=np.float32)
  return lab.numpy(), schema.serialize(key, 3, 'n01443537', stored, box.numpy(), rgb.shape[:2], emb), box.numpy()


META = {'image_size': 64, 'embedder': {'dim': 10}}


def test_stored_lab_error_is_within_the_contract():
  g = np.linspace(0, 1, 24)
  lab = skimage.color.rgb2lab(np.stack(np.meshgrid(g, g, g, indexing='ij'), -1))
  back = schema.dequantize_lab(schema.quantize_lab(tf.constant(lab, tf.float32))).numpy()
  err = np.abs(back - lab).reshape(-1, 3).max(0)
  assert err[0] <= 0.2 and err[1] <= 0.5 and err[2] <= 0.5


def test_write_then_read_round_trip():
  lab, serialized, box = _record()
  parsed = schema.parse_batch(tf.constant([serialized, serialized]), META)
  assert parsed['lab'].shape == (2, 64, 64, 3)
  assert np.abs(parsed['lab'][0].numpy() - lab).max() <= 0.5
  assert parsed['box'].numpy().tolist() == [box.tolist()] * 2
  assert parsed['size'].numpy()[0].tolist() == [128, 171]
  assert parsed['label'].numpy().tolist() == [3, 3]
  assert parsed['key'].numpy()[0] == b'k/1.jpg'
  np.testing.assert_allclose(parsed['embedding'][0].numpy(), np.linspace(0, 1, 10), atol=1e-3)


def test_embedding_halves_decode_exactly():
  values = np.array([1.0, -2.5, 1e-3, 65504, 0, 6.1e-5, 3e-6, 5.96e-8, -1e-7], np.float16)
  raw = schema.serialize('k', -1, '', b'', [0, 0, 1, 1], [1, 1], values)
  parsed = tf.io.parse_example(tf.constant([raw]), {'embedding': tf.io.FixedLenFeature([], tf.string)})
  got = schema._half_to_float(tf.io.decode_raw(parsed['embedding'], tf.uint16)).numpy()[0]
  np.testing.assert_array_equal(got, values.astype(np.float32))


def test_tf_free_reader_decodes_the_same_record(tmp_path):
  lab, serialized, box = _record()
  with tf.io.TFRecordWriter(str(tmp_path / 'train-00000-of-00001.tfrecord')) as w:
    w.write(serialized)
  (tmp_path / schema.METADATA_FILE).write_text(schema.metadata_json(META))
  code = ('import json, sys, numpy as np\n'
          'from pipeline import npreader\n'
          'r = list(npreader.records(sys.argv[1], "train"))\n'
          'assert "tensorflow" not in sys.modules\n'
          'np.save(sys.argv[2], r[0]["lab"])\n'
          'print(json.dumps({"n": len(r), "key": r[0]["key"], "box": r[0]["box"].tolist(), '
          '"label": r[0]["label"], "emb": r[0]["embedding"].tolist()}))\n')
  out = subprocess.run([sys.executable, '-c', code, str(tmp_path), str(tmp_path / 'lab.npy')],
                       capture_output=True, text=True, check=True)
  got = json.loads(out.stdout)
  assert got['n'] == 1 and got['key'] == 'k/1.jpg' and got['label'] == 3 and got['box'] == box.tolist()
  np.testing.assert_allclose(got['emb'], np.linspace(0, 1, 10), atol=1e-3)
  assert np.abs(np.load(tmp_path / 'lab.npy') - lab).max() <= 0.5


def test_metadata_of_another_schema_version_is_refused(tmp_path):
  (tmp_path / schema.METADATA_FILE).write_text(json.dumps({'schema_version': 99}))
  with pytest.raises(schema.SchemaError, match='schema version 99'):
    schema.read_metadata(str(tmp_path))
  with pytest.raises(schema.SchemaError, match='not found'):
    schema.read_metadata(str(tmp_path / 'missing'))
  with pytest.raises(schema.SchemaError, match='no train shards'):
    schema.list_shards(str(tmp_path), 'train')


def test_ab_histogram_cells_are_centred_on_multiples_of_ten():
  lab = tf.constant([[[50.0, 4.9, -5.1], [50.0, 5.1, 104.9]]])
  hist = schema.ab_histogram(lab, tf.constant([0, 0, 1, 2])).numpy()
  centre = lambda v: int((v - schema.AB_HIST_MIN) // schema.AB_HIST_BIN)
  assert hist.sum() == 2
  assert hist[centre(0), centre(-10)] == 1 and hist[centre(10), centre(100)] == 1


def test_stored_planes_decode_on_the_device_as_in_numpy():
  """The training input ships the stored planes and converts them on the device: both decoders agree exactly."""
  lab, serialized, _ = _record()
  planes = schema.parse_batch(tf.constant([serialized]), META, decode_lab=False)['lab']
  assert planes.dtype == tf.uint8 and planes.shape == (1, 3, 64, 64)
  on_device = schema.lab_from_planes(planes)[0].numpy()
  parsed = tf.io.parse_example(tf.constant([serialized]), {'lab': tf.io.FixedLenFeature([], tf.string)})
  codes = schema.decode_lab_np(parsed['lab'].numpy()[0], 64)
  np.testing.assert_array_equal(on_device, schema.dequantize_lab_np(codes))
  np.testing.assert_array_equal(codes, schema.quantize_lab(tf.constant(lab)).numpy())


def test_records_of_schema_version_1_say_how_to_regenerate(tmp_path):
  (tmp_path / schema.METADATA_FILE).write_text(json.dumps({'schema_version': 1, 'image_size': 64}))
  with pytest.raises(schema.SchemaError, match=r'schema version 1, this code reads version 2 .*'
                     r'python -m pipeline.preprocess --input SOURCES --output NEW_DIR'):
    schema.read_metadata(str(tmp_path))
  code = 'import sys\nfrom pipeline import inspect\nsys.exit(inspect.main([sys.argv[1]]))\n'
  out = subprocess.run([sys.executable, '-c', code, str(tmp_path)], capture_output=True, text=True)
  assert out.returncode == 2 and 'regenerate the records' in out.stderr and 'Traceback' not in out.stderr


def test_framed_records_are_the_bytes_of_tensorflows_and_beams_writers(tmp_path):
  import io
  from apache_beam.io.tfrecordio import _TFRecordUtil
  records = [b'', b'x', _record()[1], bytes(range(256)) * 300]    # empty, one byte, a record, 75 kB
  with tf.io.TFRecordWriter(str(tmp_path / 'tf.tfrecord')) as w:
    for r in records:
      w.write(r)
  beam_file = io.BytesIO()
  for r in records:
    _TFRecordUtil.write_record(beam_file, r)
  ours = b''.join(schema.frame(r) for r in records)
  assert ours == (tmp_path / 'tf.tfrecord').read_bytes() == beam_file.getvalue()
  (tmp_path / 'ours.tfrecord').write_bytes(ours)
  assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / 'ours.tfrecord'))] == records
