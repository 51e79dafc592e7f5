"""The ``regex`` operator's engine, which lives in ``gapless.core.regex``.

The router's header routes use the same linear-time engine, and the router may not import the flag
package's upper layers, so the engine moved to the core; this name stays for the flag modules and for
applications that imported it here.
"""

from gapless.core.regex import MAX_PATTERN_LENGTH, MAX_VALUE_LENGTH, Regex, RegexError

__all__ = ["MAX_PATTERN_LENGTH", "MAX_VALUE_LENGTH", "Regex", "RegexError"]
