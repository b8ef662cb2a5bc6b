"""Implementations of the `SecretResolver` port for development and tests. Production wires a
resolver backed by the tenant secret store (not part of this package)."""

from __future__ import annotations

import os
from collections.abc import Mapping


class StaticSecretResolver:
    """Secrets from a mapping: `{(tenant_id, secret_ref): value}` first, then `{secret_ref: value}`
    shared by every tenant. Unknown references raise KeyError (naming the reference only)."""

    def __init__(
        self,
        shared: Mapping[str, str] | None = None,
        per_tenant: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self._shared = dict(shared or {})
        self._per_tenant = dict(per_tenant or {})
        self.lookups: list[tuple[str | None, str]] = []

    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str:
        self.lookups.append((tenant_id, secret_ref))
        if tenant_id is not None and (tenant_id, secret_ref) in self._per_tenant:
            return self._per_tenant[(tenant_id, secret_ref)]
        if secret_ref in self._shared:
            return self._shared[secret_ref]
        raise KeyError(f"no secret {secret_ref!r}")

    def __repr__(self) -> str:
        return f"StaticSecretResolver(refs={sorted(self._shared)!r})"


class EnvSecretResolver:
    """Secrets from environment variables: `secret_ref` "env:OPENAI_API_KEY" reads OPENAI_API_KEY
    (the same for every tenant; for single-tenant and development deployments)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str:
        if not secret_ref.startswith("env:"):
            raise KeyError(f"secret_ref {secret_ref!r} is not of the form env:NAME")
        value = self._environ.get(secret_ref[4:])
        if not value:
            raise KeyError(f"environment variable {secret_ref[4:]!r} is not set")
        return value
