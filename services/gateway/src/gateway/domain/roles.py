"""Roles and the permission matrix enforced on every gateway route."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    DEVELOPER = "developer"
    ANALYST = "analyst"
    OBSERVER = "observer"


class Permission(StrEnum):
    TENANT_READ = "tenant:read"
    TENANT_WRITE = "tenant:write"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    API_KEYS_MANAGE = "api_keys:manage"
    AUDIT_READ = "audit:read"
    REGISTRY_READ = "registry:read"
    REGISTRY_WRITE = "registry:write"
    RUNS_READ = "runs:read"
    RUNS_WRITE = "runs:write"
    USAGE_READ = "usage:read"
    USAGE_WRITE = "usage:write"
    BILLING_READ = "billing:read"
    BILLING_MANAGE = "billing:manage"
    ADMIN_TENANTS = "admin:tenants"
    ADMIN_SYSTEM = "admin:system"


_READ = {Permission.TENANT_READ, Permission.REGISTRY_READ, Permission.RUNS_READ}

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PLATFORM_ADMIN: frozenset(Permission),
    Role.TENANT_ADMIN: frozenset(
        _READ
        | {
            Permission.TENANT_WRITE,
            Permission.USERS_READ,
            Permission.USERS_MANAGE,
            Permission.API_KEYS_MANAGE,
            Permission.AUDIT_READ,
            Permission.REGISTRY_WRITE,
            Permission.RUNS_WRITE,
            Permission.USAGE_READ,
            Permission.USAGE_WRITE,
            Permission.BILLING_READ,
            Permission.BILLING_MANAGE,
        }
    ),
    Role.DEVELOPER: frozenset(
        _READ
        | {
            Permission.USERS_READ,
            Permission.REGISTRY_WRITE,
            Permission.RUNS_WRITE,
            Permission.USAGE_READ,
            Permission.USAGE_WRITE,
        }
    ),
    Role.ANALYST: frozenset(_READ | {Permission.USERS_READ, Permission.USAGE_READ, Permission.BILLING_READ}),
    Role.OBSERVER: frozenset(_READ),
}

# Roles a tenant admin may hand out (platform_admin is only granted by platform admins).
INVITABLE_BY_TENANT_ADMIN = {Role.TENANT_ADMIN, Role.DEVELOPER, Role.ANALYST, Role.OBSERVER}


def permissions_for(role: str) -> frozenset[Permission]:
    try:
        return PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table (rendered into the README)."""
    roles = list(Role)
    lines = ["| permission | " + " | ".join(r.value for r in roles) + " |", "|---|" + "---|" * len(roles)]
    for perm in Permission:
        cells = ["yes" if perm in PERMISSIONS[r] else "" for r in roles]
        lines.append(f"| `{perm.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
