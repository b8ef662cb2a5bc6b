"""Secrets by reference from the environment, per tenant.

`resolve(tenant, ref)` reads `AILAB_SECRET_<TENANT>_<REF>`, then `AILAB_SECRET_<REF>` (the value
shared by every tenant). Tenant and reference are upper-cased and every character that is not a
letter or a digit becomes `_`: tenant `acme-eu`, ref `openai` -> `AILAB_SECRET_ACME_EU_OPENAI`, then
`AILAB_SECRET_OPENAI`. Errors name the reference, never a value; values are never logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

PREFIX = "AILAB_SECRET_"
_UNSAFE = re.compile(r"[^A-Za-z0-9]")


def env_name(*parts: str) -> str:
    return PREFIX + "_".join(_UNSAFE.sub("_", p).upper() for p in parts)


class TenantEnvSecretResolver:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def candidates(self, tenant_id: str | None, secret_ref: str) -> list[str]:
        names = [env_name(tenant_id, secret_ref)] if tenant_id else []
        return [*names, env_name(secret_ref)]

    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str:
        for name in self.candidates(tenant_id, secret_ref):
            value = self._environ.get(name)
            if value:
                return value
        raise KeyError(f"no secret {secret_ref!r} for this tenant")

    def __repr__(self) -> str:
        return "TenantEnvSecretResolver()"
