"""Tool definitions (http or builtin) with argument schemas, timeouts and host allowlists."""

from ..features import Feature

FEATURE = Feature(name="tools")
