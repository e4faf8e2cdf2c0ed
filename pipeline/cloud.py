"""gs:// paths: the checks a job makes before it starts, and errors that name the path and the fix.

Beam (google-cloud-storage), gcsfs and TensorFlow each raise their own exceptions for the same few problems: no
credentials, no such bucket, no such object, no permission. `explain` turns any of them into one message, so
every stage reports them alike. TF-free: TensorFlow's errors are recognised by class name.
"""
import logging
import os

READ_ROLE = 'roles/storage.objectViewer'
WRITE_ROLE = 'roles/storage.objectAdmin'



class PathError(ValueError):
  """A path that cannot be used as given; the message names the path and the fix."""


def is_gcs(path):
  return str(path).startswith('gs://')


def bucket_of(path):
  return str(path)[len('gs://'):].split('/', 1)[0]


def check_credentials(paths):
  """Fail at once when gs:// paths are given and no Application Default Credentials exist.

  Without this Beam retries the credentials lookup for ~25 s, goes on anonymously and fails deep inside the job
  with a 401. Emulators (STORAGE_EMULATOR_HOST) need no credentials, so the check is skipped for them.
  """
  cloud = [p for p in paths if p and is_gcs(p)]
  if not cloud or os.environ.get('STORAGE_EMULATOR_HOST'):
    return
  import google.auth
  from google.auth import exceptions
  quiet = logging.getLogger('google.auth._default')  # it warns about each place it looked; the error says it all
  level = quiet.level
  quiet.setLevel(logging.ERROR)
  try:
    google.auth.default()
  except exceptions.DefaultCredentialsError as e:
    raise PathError(
        f'{cloud[0]}: no Google Cloud credentials found ({str(e).splitlines()[0]}). Run `gcloud auth '
        'application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; on '
        'Compute Engine, Dataflow and Vertex AI the service account of the VM is used.') from None
  finally:
    quiet.setLevel(level)


def _status(exc):
  """The HTTP status behind an exception of google-cloud-storage, Beam, gcsfs or TensorFlow; None if unknown."""
  details = getattr(exc, 'exception_details', None)  # Beam's BeamIOError wraps one exception per path
  if isinstance(details, dict):
    for inner in details.values():
      status = _status(inner)
      if status:
        return status
    return None
  code = getattr(exc, 'code', None)  # google.api_core exceptions, gcsfs.retry.HttpError
  if isinstance(code, int) and 400 <= code < 600:
    return code
  name = type(exc).__name__
  if isinstance(exc, FileNotFoundError) or name == 'NotFoundError':
    return 404
  if isinstance(exc, PermissionError) or name == 'PermissionDeniedError' or str(exc).startswith('Forbidden'):
    return 403  # gcsfs raises a plain OSError('Forbidden: ...') for 403
  if name == 'UnauthenticatedError':
    return 401
  return None


def _detail(exc):
  details = getattr(exc, 'exception_details', None)
  if isinstance(details, dict) and details:
    return _detail(next(iter(details.values())))
  return ' '.join(str(exc).split())[:300]


def explain(path, exc, role=READ_ROLE, missing=None):
  """One line for a failed access to `path`: what is wrong and the command that fixes it.

  `missing` replaces the not-found text when the caller knows more (a failed listing means no such bucket).
  """
  status, bucket = _status(exc), bucket_of(path)
  if not is_gcs(path):
    return f'{path} does not exist' if status == 404 else f'{path}: {type(exc).__name__}: {_detail(exc)}'
  if status == 404:
    return missing or (f'{path} does not exist (no such object, or no bucket gs://{bucket}); check the path with '
                       f'`gcloud storage ls {path}`')
  if status == 403:
    return (f'{path}: permission denied ({_detail(exc)}). Grant the account this runs as {role} on gs://{bucket}: '
            f'`gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=user:YOU@example.com '
            f'--role={role}` (serviceAccount:... for a service account), or use credentials that have it')
  if status == 401:
    return (f'{path}: the credentials were rejected ({_detail(exc)}); run `gcloud auth application-default login` '
            'again or check GOOGLE_APPLICATION_CREDENTIALS')
  return f'{path}: {type(exc).__name__}: {_detail(exc)}'


def no_bucket(path):
  bucket = bucket_of(path)
  return (f'{path}: bucket gs://{bucket} does not exist; check the name, or create it with '
          f'`gcloud storage buckets create gs://{bucket} --location=REGION`')
