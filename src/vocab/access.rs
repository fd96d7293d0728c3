//! Who may do what: the admin roles (enforced by the admin API, `admin/auth.rs`) and the
//! rule that decides whether a tenant may call a route (enforced by the proxy, shown by the
//! admin API).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Only its own tenant: its API keys, its usage, a read-only view of its routes.
    TenantAdmin,
    /// Read-only everything; secrets are never shown to anyone.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Whether a tenant may use a route: listed in the route's `tenants` (or the list is
/// null) and the route's service is not private to someone else.
pub fn tenant_may_use(listed: Option<&[Uuid]>, service_tenant: Option<Uuid>, tenant: Uuid) -> bool {
    let listed = listed.is_none_or(|ids| ids.contains(&tenant));
    let service_ok = service_tenant.is_none_or(|owner| owner == tenant);
    listed && service_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::TenantAdmin, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.as_str().into())
            );
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_tenant_needs_the_list_and_the_service() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(tenant_may_use(None, None, a));
        assert!(tenant_may_use(Some(&[a]), None, a));
        assert!(!tenant_may_use(Some(&[b]), None, a));
        assert!(!tenant_may_use(Some(&[]), None, a));
        assert!(tenant_may_use(None, Some(a), a));
        assert!(!tenant_may_use(None, Some(b), a));
        assert!(!tenant_may_use(Some(&[a]), Some(b), a));
    }
}
