"""A real Cloud Storage emulator on loopback for the tests, and the pytest fixture that runs it.

    from gcs import gcs  # noqa: F401  (the fixture)

    def test_x(gcs):
      src = gcs.upload_dir(local_folder, 'photos')        # -> 'gs://colorizer-test/photos'
      subprocess.run([...], env=gcs.env())               # child processes see the same emulator
      gcs.ls('records/'), gcs.read('records/metadata.json')

The emulator is gcp-storage-emulator (PyPI), run in a child process that this fixture starts on free loopback
ports and stops (the child also exits by itself when the test process dies: it watches its stdin). Why that
emulator, and what each library needs to reach it:

- Beam (apache_beam.io.gcp.gcsio) and gcsfs honour STORAGE_EMULATOR_HOST. Beam's file sinks finish by
  renaming temporary files with batch copy + delete requests; gcp-storage-emulator answers batches, the Go
  fake-gcs-server answers each part "400 unable to process request" and the write fails.
- Beam looks up Application Default Credentials with four retries and back-off (~25 s a process) before it
  goes anonymous, so the fixture gives it credentials: an authorized_user file holding an access token that
  expires in 2099, so nothing is ever refreshed against Google's token endpoint.
- gcsfs >= 2026 asks the Storage Control gRPC API for each bucket's layout; an emulator has no gRPC, and the
  lookup waits 60 s per call: GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false keeps gcsfs on the JSON API.
- TensorFlow's own gs:// filesystem (tf.io.gfile, tf.data, checkpoints, SavedModel, summaries) has no endpoint
  setting: https://www.googleapis.com and https://storage.googleapis.com are constants in its C++ source. Its
  libcurl does honour https_proxy and CURL_CA_BUNDLE, and its auth honours GOOGLE_AUTH_TOKEN_FOR_TESTING, so
  the child also runs a loopback proxy that accepts CONNECT to those two hosts only, terminates TLS with a
  certificate from a throw-away CA made here, and forwards the requests to the emulator.
- What the emulator lacks and TensorFlow uses is filled in here: zero-byte media uploads (TF's directory markers;
  the emulator drops the connection), buckets.getStorageLayout (TF 2.21 asks it before renaming a directory), and
  libcurl's chunked bodies and "Expect: 100-continue" (decoded and answered by the proxy). So are object names
  as GCS keeps them (`a/../b`, `a//b`: the emulator normalises the path it stores their bytes at).
- No emulator implements IAM: bucket FORBIDDEN_BUCKET answers every request with the 403 body GCS sends a
  caller without permission, so the error path runs through the real client libraries.
- The metadata server (169.254.169.254) is never probed: NO_GCE_CHECK and GCE_METADATA_* point at loopback.
"""
import datetime
import http.client
import http.server
import json
import os
import pathlib
import select
import ssl
import subprocess
import sys
import threading
import time
from functools import partial

import pytest

BUCKET = 'colorizer-test'
PROJECT = 'colorizer-test'
FORBIDDEN_BUCKET = 'forbidden-bucket'
TOKEN = 'emulator-token'
GOOGLE_HOSTS = ('www.googleapis.com', 'storage.googleapis.com')  # where TensorFlow sends every request
_CLOSED_PORT = '127.0.0.1:9'  # discard port, closed here: a metadata-server probe fails at once, on loopback


# ---------------------------------------------------------------- the child process

_FORBIDDEN_MESSAGE = ('emulator-user@colorizer-test.iam.gserviceaccount.com does not have storage.objects.list access '
                      "to the Google Cloud Storage bucket. Permission 'storage.objects.list' denied on resource (or "
                      'it may not exist).')
_FORBIDDEN = {'error': {'code': 403, 'message': _FORBIDDEN_MESSAGE,  # GCS's own body for a caller without the role
                        'errors': [{'message': _FORBIDDEN_MESSAGE, 'domain': 'global', 'reason': 'forbidden'}]}}


def _emulator_handler():
  from gcp_storage_emulator.server import RequestHandler

  class Handler(RequestHandler):
    """gcp-storage-emulator's handler, plus GCS's own 403 for FORBIDDEN_BUCKET (no emulator has IAM) and the one
    JSON call TensorFlow makes that it lacks."""

    def handle_one_request(self):
      self.raw_requestline = self.rfile.readline(65537)
      if not self.raw_requestline or not self.parse_request():
        self.close_connection = True
        return
      if f'/b/{FORBIDDEN_BUCKET}' in self.path or self.path.startswith(f'/{FORBIDDEN_BUCKET}/'):
        self._json(403, _FORBIDDEN)
      elif self.command == 'GET' and self.path.split('?')[0].endswith('/storageLayout'):
        self._storage_layout()
      elif hasattr(self, 'do_' + self.command):
        getattr(self, 'do_' + self.command)()
      else:
        self.send_error(501, f'{self.command} is not implemented by the emulator')
      self.wfile.flush()

    def _storage_layout(self):
      """buckets.getStorageLayout, which the emulator lacks (404) and TensorFlow 2.21 asks before it renames a
      directory (a hierarchical-namespace bucket renames folders in one call): a flat bucket, as GCS answers."""
      bucket = self.path.split('?')[0].split('/b/', 1)[1].split('/', 1)[0]
      if not self.storage.get_bucket(bucket):
        self._json(404, {'error': {'code': 404, 'message': 'The specified bucket does not exist.'}})
        return
      self._json(200, {'kind': 'storage#storageLayout', 'bucket': bucket, 'location': 'US',
                       'locationType': 'multi-region', 'hierarchicalNamespace': {'enabled': False}})

    def _json(self, status, obj):
      self.rfile.read(int(self.headers.get('Content-Length') or 0))
      body = json.dumps(obj).encode()
      self.send_response(status)
      self.send_header('Content-Type', 'application/json; charset=UTF-8')
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  return Handler


class _TLSFront(http.server.BaseHTTPRequestHandler):
  """HTTPS proxy for TensorFlow: CONNECT www/storage.googleapis.com:443, TLS with our certificate, then each
  request is forwarded to the emulator. One request per connection keeps it simple (curl reconnects)."""
  protocol_version = 'HTTP/1.1'
  upstream = None      # (host, port) of the emulator
  tls = None           # ssl.SSLContext holding the certificate for GOOGLE_HOSTS

  def do_CONNECT(self):
    host, _, port = self.path.partition(':')
    if host not in GOOGLE_HOSTS or port != '443':
      self.send_error(403, f'this test proxy only reaches {", ".join(GOOGLE_HOSTS)}')
      return
    self.send_response(200, 'Connection established')
    self.end_headers()
    self.wfile.flush()
    self.connection = self.tls.wrap_socket(self.connection, server_side=True)
    self.rfile = self.connection.makefile('rb')
    self.wfile = self.connection.makefile('wb')
    self.close_connection = False
    self.handle_one_request()
    self.close_connection = True

  def handle_expect_100(self):
    # libcurl waits up to 1 s for "100 Continue" before it sends a body; the TLS socket's writer is buffered.
    ok = super().handle_expect_100()
    self.wfile.flush()
    return ok

  def _forward(self):
    path = self.path
    if path.startswith('http://') or path.startswith('https://'):  # a plain proxy request: absolute form
      host = path.split('/')[2]
      if host not in GOOGLE_HOSTS:
        self.send_error(403, f'this test proxy only reaches {", ".join(GOOGLE_HOSTS)}')
        return
      path = '/' + path.split('/', 3)[3] if path.count('/') >= 3 else '/'
    body = self._body()
    headers = {k: v for k, v in self.headers.items()
               if k.lower() not in ('proxy-connection', 'connection', 'transfer-encoding', 'content-length')}
    headers['Content-Length'] = str(len(body))
    conn = http.client.HTTPConnection(*self.upstream, timeout=60)
    started = time.time()
    try:
      conn.request(self.command, path, body=body, headers=headers)
      resp = conn.getresponse()
      data = resp.read()
    finally:
      conn.close()
    # One line per request in emulator.log: what TensorFlow asked for, for whoever debugs a gs:// test.
    print(f'{self.command} {self.headers.get("Host")}{path} -> {resp.status} ({len(body)} B up, {len(data)} B down, '
          f'{1000 * (time.time() - started):.0f} ms)', file=sys.stderr, flush=True)
    self.send_response(resp.status, resp.reason)
    for k, v in resp.getheaders():
      if k.lower() in ('content-length', 'connection', 'transfer-encoding'):
        continue
      if k.lower() == 'location':  # the emulator names its own scheme; TensorFlow must come back over TLS
        v = v.replace('http://', 'https://', 1)
      self.send_header(k, v)
    self.send_header('Content-Length', str(len(data)))
    self.send_header('Connection', 'close')
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(data)
    self.wfile.flush()
    self.close_connection = True

  def _body(self):
    if 'chunked' not in self.headers.get('Transfer-Encoding', ''):
      return self.rfile.read(int(self.headers.get('Content-Length') or 0))
    body = b''  # libcurl sends TensorFlow's uploads chunked: the emulator reads Content-Length only
    while True:
      size = int(self.rfile.readline().split(b';')[0], 16)
      if not size:
        while self.rfile.readline() not in (b'\r\n', b'\n', b''):  # trailers
          pass
        return body
      body += self.rfile.read(size)
      self.rfile.readline()

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

  def log_message(self, *args):
    pass


def _patch_empty_media_upload():
  """gcp-storage-emulator 2026.7.19 fails on a zero-byte uploadType=media request (its body parser returns None:
  TypeError, connection dropped). TensorFlow makes every directory marker (makedirs, SavedModel's variables/)
  that way, and GCS accepts it, so the empty body is given back as b''."""
  from gcp_storage_emulator.handlers import objects

  media_upload = objects._media_upload

  def patched(request, response, storage):
    if request.data is None:
      request._data = b''
    return media_upload(request, response, storage)

  objects._media_upload = patched


def _patch_literal_object_names():
  """gcp-storage-emulator 2026.7.19 keeps an object's bytes at a path made from its name, normalised: the bytes of
  `a//b` and `a/./b` land on those of `a/b`, and `a/../b` is refused (TypeError, connection dropped). GCS keeps
  any UTF-8 name as it is, and the colouring job's tests put such names beside the ones they mimic, so the bytes
  are kept under the percent-encoded name instead: one key per name, as GCS has it."""
  from urllib.parse import quote

  from gcp_storage_emulator.storage import Storage

  Storage._object_path = lambda self, bucket_name, file_name: f'{bucket_name}/{quote(file_name, safe="")}'


def _serve(cert, key):
  """Child process: emulator + TLS front on free loopback ports; prints them; exits when stdin closes."""
  from gcp_storage_emulator.storage import Storage

  _patch_empty_media_upload()
  _patch_literal_object_names()

  storage = Storage(use_memory_fs=True)
  emulator = http.server.HTTPServer(('127.0.0.1', 0), partial(_emulator_handler(), storage))
  tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
  tls.load_cert_chain(cert, key)
  front_handler = type('Front', (_TLSFront,), {'upstream': emulator.server_address, 'tls': tls})
  front = http.server.ThreadingHTTPServer(('127.0.0.1', 0), front_handler)
  front.daemon_threads = True
  for server in (emulator, front):
    threading.Thread(target=server.serve_forever, daemon=True).start()
  print(json.dumps({'emulator': emulator.server_address[1], 'proxy': front.server_address[1]}), flush=True)
  sys.stdin.read()  # returns when the parent closes the pipe or dies
  os._exit(0)


# ---------------------------------------------------------------- certificates and credentials

def _certificates(folder):
  """A throw-away CA and a certificate for GOOGLE_HOSTS signed by it (PEM files): only the proxy's."""
  from cryptography import x509
  from cryptography.hazmat.primitives import hashes, serialization
  from cryptography.hazmat.primitives.asymmetric import ec
  from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

  now = datetime.datetime.now(datetime.timezone.utc)
  name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

  def cert(subject, key, issuer, issuer_key, extensions):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2)))
    for ext, critical in extensions:
      builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())

  ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
  ca = cert(name('colorizer test CA'), ca_key, name('colorizer test CA'), ca_key, [
      (x509.BasicConstraints(ca=True, path_length=0), True),
      (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                     key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                     decipher_only=False), True)])
  leaf = cert(name(GOOGLE_HOSTS[0]), key, ca.subject, ca_key, [
      (x509.SubjectAlternativeName([x509.DNSName(h) for h in GOOGLE_HOSTS]), False),
      (x509.BasicConstraints(ca=False, path_length=None), True),
      (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)])
  pem = serialization.Encoding.PEM
  paths = {'ca': folder / 'ca.pem', 'cert': folder / 'cert.pem', 'key': folder / 'key.pem'}
  paths['ca'].write_bytes(ca.public_bytes(pem))
  paths['cert'].write_bytes(leaf.public_bytes(pem))
  paths['key'].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
  return paths


def _credentials(folder):
  """Application Default Credentials as `gcloud auth application-default login` leaves them, with a token that
  is valid until 2099 so that google-auth never calls Google's token endpoint."""
  path = folder / 'application_default_credentials.json'
  path.write_text(json.dumps({'type': 'authorized_user', 'client_id': 'emulator', 'client_secret': 'emulator',
                              'refresh_token': 'emulator', 'token': TOKEN, 'expiry': '2099-01-01T00:00:00Z',
                              'quota_project_id': PROJECT}))
  return path


def no_credentials_env(folder):
  """Variables for a process that has no Google credentials at all and must not look for a metadata server."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  return {'CLOUDSDK_CONFIG': str(folder), 'GOOGLE_APPLICATION_CREDENTIALS': None, 'NO_GCE_CHECK': 'true',
          'GCE_METADATA_HOST': _CLOSED_PORT, 'GCE_METADATA_IP': _CLOSED_PORT}


# ---------------------------------------------------------------- the fixture

class Emulator:
  """A running emulator: the variables that point every library at it, and helpers on its default bucket.

  The helpers use the google-cloud-storage client directly, so they do not depend on what is being tested.
  """

  def __init__(self, folder):
    self._folder = pathlib.Path(folder)
    self.log = self._folder / 'emulator.log'  # the child's stderr: one line per request TensorFlow made
    self._saved = {}
    certs = _certificates(self._folder)
    with open(self.log, 'wb') as log:
      self._proc = subprocess.Popen([sys.executable, __file__, str(certs['cert']), str(certs['key'])],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
      self._start(certs)
    except BaseException:
      self.stop()
      raise

  def _start(self, certs):
    ready, _, _ = select.select([self._proc.stdout], [], [], 30)
    if not ready:
      raise RuntimeError(f'the GCS emulator did not start in 30 s; see {self.log}')
    ports = json.loads(self._proc.stdout.readline() or '{}')
    if not ports:
      raise RuntimeError(f'the GCS emulator exited at start; see {self.log}')
    self.endpoint = f'http://127.0.0.1:{ports["emulator"]}'
    self.proxy = f'http://127.0.0.1:{ports["proxy"]}'
    self.variables = {
        # google-cloud-storage (Beam's gcsio) and gcsfs
        'STORAGE_EMULATOR_HOST': self.endpoint,
        'GOOGLE_CLOUD_PROJECT': PROJECT,
        'GOOGLE_APPLICATION_CREDENTIALS': str(_credentials(self._folder)),
        'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
        # TensorFlow's gs:// filesystem (libcurl): through the TLS front to the emulator
        'https_proxy': self.proxy, 'HTTPS_PROXY': self.proxy, 'http_proxy': self.proxy,
        'no_proxy': '127.0.0.1,localhost', 'NO_PROXY': '127.0.0.1,localhost',
        'CURL_CA_BUNDLE': str(certs['ca']),
        'GOOGLE_AUTH_TOKEN_FOR_TESTING': TOKEN,
        'GCS_RETRY_CONFIG_MAX_RETRIES': '2', 'GCS_RETRY_CONFIG_INIT_DELAY_TIME_US': '100000',
        # never the metadata server
        'NO_GCE_CHECK': 'true', 'GCE_METADATA_HOST': _CLOSED_PORT, 'GCE_METADATA_IP': _CLOSED_PORT,
    }
    self.bucket = BUCKET
    self._saved = {k: os.environ.get(k) for k in self.variables}
    os.environ.update(self.variables)
    _reset_gcsfs()
    from google.cloud import storage
    self.client = storage.Client(project=PROJECT)
    self.create_bucket(BUCKET)

  def stop(self):
    """Restore os.environ and end the child (it also ends by itself if this process dies: its stdin closes)."""
    for k, v in self._saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    self._saved = {}
    _reset_gcsfs()
    self._proc.stdin.close()
    try:
      self._proc.wait(10)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
    self._proc.stdout.close()

  def env(self, **overrides):
    """os.environ for a child process (the emulator's variables included); None removes a variable."""
    env = dict(os.environ, **self.variables)
    for k, v in overrides.items():
      if v is None:
        env.pop(k, None)
      else:
        env[k] = v
    return env

  def url(self, *parts, bucket=None):
    return 'gs://' + '/'.join([bucket or self.bucket] + [p.strip('/') for p in parts if p])

  def create_bucket(self, name):
    self.client.create_bucket(name)
    return 'gs://' + name

  def write(self, path, data):
    self.client.bucket(self.bucket).blob(path).upload_from_string(data)
    return self.url(path)

  def upload_file(self, local, path):
    self.client.bucket(self.bucket).blob(path).upload_from_filename(str(local))
    return self.url(path)

  def upload_dir(self, local, prefix):
    """Every file under `local` to gs://BUCKET/prefix/<relative path>; returns that prefix's URL."""
    local = pathlib.Path(local)
    for f in sorted(p for p in local.rglob('*') if p.is_file()):
      self.upload_file(f, f'{prefix.strip("/")}/{f.relative_to(local).as_posix()}')
    return self.url(prefix)

  def ls(self, prefix=''):
    return sorted(b.name for b in self.client.list_blobs(self.bucket, prefix=prefix))

  def read(self, path):
    return self.client.bucket(self.bucket).blob(path).download_as_bytes()


def _reset_gcsfs():
  """gcsfs caches filesystem instances (and so the endpoint they were made with) per process."""
  if 'gcsfs' in sys.modules:
    sys.modules['gcsfs'].GCSFileSystem.clear_instance_cache()


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """A fresh emulator for a test module, with bucket BUCKET; os.environ points at it while the module runs."""
  emulator = Emulator(tmp_path_factory.mktemp('gcs'))
  try:
    yield emulator
  finally:
    emulator.stop()


if __name__ == '__main__':
  _serve(sys.argv[1], sys.argv[2])
