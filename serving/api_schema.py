"""The REST API's OpenAPI description (GET /openapi.json): the bodies' schemas and the parameters' documentation.

Documentation only: serving/tfserving.py parses and checks the requests themselves.
"""
import pydantic

from serving import user_hints


class B64(pydantic.BaseModel):
  b64: str = pydantic.Field(description='standard base64 of the image file (JPEG, PNG, GIF, BMP, TIFF, WebP)')


class PredictRequest(pydantic.BaseModel):
  """TF Serving's predict request: exactly one of `instances` (rows) or `inputs` (columns)."""
  signature_name: str = pydantic.Field('serving_default', description='serving_default (JPEG out), '
                                       'colorize_png (PNG out), raw (L canvas in, ab out); with --hints also '
                                       'colorize_hints, colorize_hints_png and suggest_colours; with the colour '
                                       'strength colorize_strength(_png) and colorize_hints_strength(_png) (see '
                                       'the metadata)')
  instances: list | None = pydantic.Field(None, description='one entry per image: {"b64": ...} '
                                          '(or {"image_bytes": {"b64": ...}}); for raw, [S, S, 1] L canvases; for '
                                          'colorize_hints {"image_bytes": {"b64": ...}, "points": [[x, y], ...], '
                                          '"colours": [[r, g, b], ...], "radius": [r, ...]} (+ "at" for '
                                          'suggest_colours); the *_strength signatures also take "strength": '
                                          '0..1 per image')
  inputs: dict | list | None = pydantic.Field(None, description='columnar: {"image_bytes": [{"b64": ...}, ...]}')


class PredictResponse(pydantic.BaseModel):
  predictions: list[B64] | None = pydantic.Field(None, description='row format: one {"b64": ...} per image')
  outputs: list[B64] | dict | None = pydantic.Field(None, description='columnar format')


class Suggestion(pydantic.BaseModel):
  colour: str = pydantic.Field(description='#rrggbb (sRGB, at the photo\'s lightness there)')
  probability: float = pydantic.Field(description='the model\'s probability of this colour there (0..1)')


class SuggestResponse(pydantic.BaseModel):
  x: float
  y: float
  palette: list[Suggestion] = pydantic.Field(description='the likeliest distinct colours, likeliest first')


class Error(pydantic.BaseModel):
  error: str = pydantic.Field(description='what was wrong and what to do about it')


ERRORS = {s: {'model': Error} for s in (400, 404, 408, 411, 413, 503)}
IMAGE_BODY = {'requestBody': {'required': True, 'description': 'the image file itself (at most --max-bytes)',
                              'content': {t: {'schema': {'type': 'string', 'format': 'binary'}}
                                          for t in ('image/jpeg', 'image/png', 'application/octet-stream')}}}
HINTS_DOC = ('the user\'s colours, a JSON list of hints: [{"x": 0.5, "y": 0.2, "colour": "#3060c0"}, ...] (x, y '
             f'from 0 to 1 from the photo\'s left and top edges; colour #RRGGBB or [r, g, b]; optional "radius", a '
             f'share of the long side, 0..0.25; at most {user_hints.MAX_HINTS}). For models trained with --hints '
             '(GET /healthz says "hints": true).')
STRENGTH_DOC = ('the colour strength, 0 (palest, the most accurate: each colour as often as it occurs) to 1 (the '
                'most vivid: near the likeliest colour); left out: the model\'s default (GET /healthz says "strength": '
                'the default, or null for a model without the control, which answers 400). With or without hints.')
HINTS_HEADER_DOC = 'the same as the hints parameter (simpler with curl: no URL encoding); send one of the two'
JSON_BODY = {'requestBody': {'required': True, 'content': {'application/json': {
    'schema': PredictRequest.model_json_schema()}}}}
