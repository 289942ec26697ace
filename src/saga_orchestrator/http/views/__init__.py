"""The shapes of the API: every request body, query and response body is a class here, one
module per resource (as the ``routes_*`` modules are).

The handlers build their answers from these classes (:func:`to_json`), check requests against
them (:mod:`..validate`), and the OpenAPI document (:mod:`..openapi`) describes them
(:mod:`..schema`): one source, so the document cannot drift from what the service does.

Response classes give no field a default, except the ones left out when ``None``
(``omit_if_none``): every other key is always there, so the document marks it required.
Request classes give a default to every optional field.
"""

from ._base import MAX_INT64 as MAX_INT64
from ._base import MAX_TEXT as MAX_TEXT
from ._base import to_json as to_json
