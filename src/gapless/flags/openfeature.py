"""An OpenFeature provider backed by a ``FlagClient``: gapless flags through the vendor-neutral API.

    from openfeature import api
    from gapless.flags.openfeature import GaplessProvider
    from gapless.flags.sdk import FlagClient

    api.set_provider_and_wait(GaplessProvider(FlagClient(bootstrap_file="flags.json")))
    api.get_client().get_boolean_value("new-checkout", False, EvaluationContext("user-42", {"plan": "pro"}))

The evaluation context becomes a gapless context: its attributes, plus ``targetingKey`` from the
context's targeting key. Reasons and error codes are gapless's own, which are OpenFeature's names; a
value of another type than requested is ``TYPE_MISMATCH`` (an integer flag value read as a float is
converted, a float read as an integer only when it is whole). Every resolution is counted by the
client, like its own evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as OFErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider, Metadata

from gapless.flags.evaluate import ErrorCode, Evaluation, Reason
from gapless.flags.sdk import FlagClient

__all__ = ["GaplessProvider"]

T = TypeVar("T")

_ERROR_CODES: dict[ErrorCode, OFErrorCode] = {
    ErrorCode.FLAG_NOT_FOUND: OFErrorCode.FLAG_NOT_FOUND,
    ErrorCode.TYPE_MISMATCH: OFErrorCode.TYPE_MISMATCH,
    ErrorCode.TARGETING_KEY_MISSING: OFErrorCode.TARGETING_KEY_MISSING,
    ErrorCode.PARSE_ERROR: OFErrorCode.PARSE_ERROR,
    ErrorCode.PROVIDER_NOT_READY: OFErrorCode.PROVIDER_NOT_READY,
    ErrorCode.GENERAL: OFErrorCode.GENERAL,
}


def _context(evaluation_context: EvaluationContext | None) -> dict[str, Any]:
    if evaluation_context is None:
        return {}
    ctx = dict(evaluation_context.attributes)
    if evaluation_context.targeting_key is not None:
        ctx["targetingKey"] = evaluation_context.targeting_key
    return ctx


def _unreadable(default: Any, e: Exception) -> Evaluation:
    return Evaluation(
        default,
        None,
        Reason.ERROR,
        ErrorCode.GENERAL,
        f"unreadable evaluation context: {type(e).__name__}: {e}"[:300],
    )


class GaplessProvider(AbstractProvider):
    """OpenFeature provider for gapless flags, evaluated locally by ``client``.

    ``initialize`` starts the client if nobody has (and ``shutdown`` then closes it); a client the
    application started stays the application's to close.
    """

    def __init__(self, client: FlagClient) -> None:
        super().__init__()
        self.client = client
        self._owns_start = False

    def get_metadata(self) -> Metadata:
        return Metadata(name="gapless")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if not self.client.started:
            self._owns_start = True
            self.client.start()

    def shutdown(self) -> None:
        if self._owns_start:
            self.client.close()

    def _evaluate(
        self, flag_key: str, evaluation_context: EvaluationContext | None, default: Any
    ) -> Evaluation:
        try:
            ctx = _context(evaluation_context)
        except Exception as e:  # a hostile attributes mapping: an error result, as for any evaluation
            return _unreadable(default, e)
        return self.client.evaluate(flag_key, ctx, default)

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        ev = self._evaluate(flag_key, evaluation_context, default_value)
        return _details(ev, default_value, ev.value)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        ev = self._evaluate(flag_key, evaluation_context, default_value)
        return _details(ev, default_value, ev.value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        ev = self._evaluate(flag_key, evaluation_context, default_value)
        value = ev.value
        if ev.error_code is None and isinstance(value, float):
            if not value.is_integer():
                return _mismatch(default_value, f"flag {flag_key!r} is {value}, not an integer")
            value = int(value)
        return _details(ev, default_value, value)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        ev = self._evaluate(flag_key, evaluation_context, default_value)
        value = ev.value
        if ev.error_code is None and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                return _mismatch(default_value, f"flag {flag_key!r} is an integer too large for a float")
        return _details(ev, default_value, value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        ev = self._evaluate(flag_key, evaluation_context, default_value)
        return _details(ev, default_value, ev.value)


def _details(ev: Evaluation, default: T, value: Any) -> FlagResolutionDetails[T]:
    if ev.error_code is not None:
        return FlagResolutionDetails(
            value=default,
            error_code=_ERROR_CODES[ev.error_code],
            error_message=ev.error_message,
            reason=OFReason.ERROR,
        )
    metadata = {} if ev.rule_index is None else {"ruleIndex": ev.rule_index}
    return FlagResolutionDetails(
        value=value,
        reason=OFReason(ev.reason.value),
        variant=ev.variant,
        flag_metadata=metadata,
    )


def _mismatch(default: T, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default, error_code=OFErrorCode.TYPE_MISMATCH, error_message=message, reason=OFReason.ERROR
    )
