"""The HTTP API: a Quart-Trio app over references to the actors (see :mod:`.app`)."""

from .app import MAX_BODY_BYTES as MAX_BODY_BYTES
from .app import ApiDeps as ApiDeps
from .app import create_app as create_app
from .app import deps as deps
from .errors import ERROR_TABLE as ERROR_TABLE
from .errors import error_response as error_response
