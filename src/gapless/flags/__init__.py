"""Feature flags: the model and ruleset export, evaluation, the application SDK and its OpenFeature provider.

Deliberately empty of imports: applications import ``gapless.flags.sdk`` (or ``.openfeature``), and
importing this package must not pull in the model's pydantic or anything of the control plane.

| module | holds | imports |
|---|---|---|
| ``model`` | projects, flags, segments, release plans; ``ruleset_for`` | pydantic, the evaluator's checks |
| ``evaluate`` | ``compile_ruleset``, ``CompiledRuleset.evaluate``, ``Evaluation`` | stdlib, mmh3 |
| ``operators`` / ``regex`` / ``bucketing`` | condition operators, the bounded regex engine, buckets | stdlib, mmh3 |
| ``sdk`` | ``FlagClient`` and the ``Transport`` seam | stdlib, the evaluator |
| ``openfeature`` | ``GaplessProvider`` | openfeature-sdk, the client |
| ``transport`` | ``HttpTransport``: rulesets streamed from the flag service, ``from_env()`` | stdlib, httpx |
| ``address`` | flag service addresses: ``http(s)://`` URLs and ``unix:PATH[:BASE]`` sockets | stdlib |
"""
